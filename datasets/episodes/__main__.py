"""Builds an `act_episodes` TFDS dataset from a directory of recorded episodes.

    python -m act_jax_datasets.episodes --episodes data/episodes/sim_demos --data-dir data/tfds
"""

import argparse

from act_jax_datasets.episodes.episodes_dataset_builder import build


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", required=True, help="directory of episode_NNNNNN.npz files")
    p.add_argument("--data-dir", default="data/tfds", help="TFDS data dir (default %(default)s)")
    p.add_argument("--name", default="sim_demos", help="dataset config name (default %(default)s)")
    args = p.parse_args(argv)
    path = build(args.episodes, args.data_dir, args.name)
    print(f"built {path}")


if __name__ == "__main__":
    main()
