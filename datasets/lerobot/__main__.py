"""Converts a LeRobot dataset on local disk (v2.0/v2.1 or v3.0) into an `act_episodes` dataset.

    python -m act_jax_datasets.lerobot --src /path/to/lerobot_dataset --data-dir data/tfds \
        --name my_dataset [--image-size 96x128] [--camera-map top=observation.images.laptop]

Nothing is downloaded: `--src` is a directory holding meta/info.json (for a hub dataset, the
copy LeRobot keeps under ~/.cache/huggingface/lerobot/<repo_id>).
"""

import argparse
import sys

from act_jax_datasets.lerobot.lerobot_dataset_builder import build, parse_camera_map
from hardware.conventions import parse_image_size


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", required=True, help="LeRobot dataset directory (holds meta/info.json)")
    p.add_argument("--data-dir", default="data/tfds", help="TFDS data dir (default %(default)s)")
    p.add_argument("--name", required=True, help="dataset config name: act_episodes/<name>")
    p.add_argument(
        "--image-size",
        type=parse_image_size,
        default=None,
        help="HxW of the stored frames, e.g. 96x128 (default: the source size)",
    )
    p.add_argument(
        "--camera-map",
        action="append",
        default=[],
        help="NAME=FEATURE, e.g. top=observation.images.laptop (repeat, or separate "
        "with commas); default: observation.images.<name> -> <name>",
    )
    p.add_argument(
        "--tolerance-s",
        type=float,
        default=1e-4,
        help="largest gap between a row's timestamp and its video frame, s "
        "(LeRobot's default %(default)g)",
    )
    p.add_argument(
        "--keep-joint-order",
        action="store_true",
        help="accept joint names other than ours, keeping the dataset's order",
    )
    args = p.parse_args(argv)
    try:
        conv = build(
            args.src,
            args.data_dir,
            args.name,
            image_size=args.image_size,
            camera_map=parse_camera_map(args.camera_map),
            tolerance_s=args.tolerance_s,
            keep_joint_order=args.keep_joint_order,
        )
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(conv)


if __name__ == "__main__":
    main()
