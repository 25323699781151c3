"""Builds an `act_episodes` TFDS dataset from a directory of recorded episodes.

    python -m act_jax_datasets.episodes --episodes data/episodes/sim_demos --data-dir data/tfds

Exit status 0 built, 1 a damaged episode file (named) stopped the build: `--skip-damaged` leaves
such files out, naming each.
"""

import argparse
import sys

from act_jax_datasets.episodes.episodes_dataset_builder import build
from hardware.recording.episodes import EpisodeDamaged


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", required=True, help="directory of episode_NNNNNN.npz files")
    p.add_argument("--data-dir", default="data/tfds", help="TFDS data dir (default %(default)s)")
    p.add_argument("--name", default="sim_demos", help="dataset config name (default %(default)s)")
    p.add_argument(
        "--skip-damaged",
        action="store_true",
        help="build from the intact episodes, naming each damaged file left out "
        "(default: a damaged file stops the build)",
    )
    args = p.parse_args(argv)
    try:
        path = build(args.episodes, args.data_dir, args.name, skip_damaged=args.skip_damaged)
    except EpisodeDamaged as e:
        print(f"act_jax_datasets.episodes: error: {e}", file=sys.stderr)
        return 1
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
