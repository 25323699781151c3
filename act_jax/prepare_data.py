"""The data a training run needs, made before it reads any: the train app's own steps.

    record_missing_demos(config.data, config.model.image_size)  # python -m act_jax.train only
    dataset_dir = ensure_dataset(config.data, config.model.image_size)  # train_and_evaluate

An existing TFDS dataset is used as is. Else, when `config.data.record_episodes > 0` and
`config.data.episodes_dir` holds no episodes, the command line (`python -m act_jax.train`, and
`python -m interp.freeze_finetune`) has the scripted expert record them in the sim first; the
trainer itself never records. Then the episodes are built into the dataset. The data pipeline
(`act_jax.data`) only reads what these made.

The recording runs as the recorder's own command in a child process,

    python -m hardware.record --robot sim --teleop expert --episodes N --out DIR \\
        --image-size HxW --seed S --locations D

not by importing it: `act_jax` never imports the recorder (the import graph stays one way,
`tests/test_import_graph.py`), and the command line is the recorder's stable interface, the one
a person runs by hand. The same arguments always give the same files; an interrupted recording
is resumed by running again. Building is `act_jax_datasets.episodes.build`, what
`python -m act_jax_datasets.episodes` runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from act_jax.data.loading import dataset_dir_for
from hardware.recording.episodes import list_episodes


def record_command(data_config, image_size: Sequence[int]) -> list[str]:
    """The `python -m hardware.record` command that records `config.data`'s sim demos."""
    h, w = (int(v) for v in image_size)
    return [
        sys.executable,
        "-m",
        "hardware.record",
        "--robot",
        "sim",
        "--teleop",
        "expert",
        "--episodes",
        str(int(data_config.record_episodes)),
        "--out",
        str(data_config.episodes_dir),
        "--image-size",
        f"{h}x{w}",
        "--seed",
        str(int(data_config.record_seed)),
        "--locations",
        str(data_config.record_locations),
    ]


def record_missing_demos(data_config, image_size: Sequence[int]) -> bool:
    """Records `config.data.record_episodes` scripted-expert demos into `episodes_dir` when there
    is neither a dataset nor an episode to build one from. Returns whether it recorded.

    Nothing happens when the TFDS dataset exists, when `dataset_dir` names one explicitly, when
    episodes are already there, or when `record_episodes` is 0 (`ensure_dataset` then says what
    is missing).

    Raises:
      RuntimeError: the recorder failed (its exit status and command).
    """
    if data_config.dataset_dir or data_config.record_episodes <= 0:
        return False
    if (dataset_dir_for(data_config) / "dataset_info.json").exists():
        return False
    if not data_config.episodes_dir:
        return False
    if list_episodes(Path(data_config.episodes_dir)):
        return False
    cmd = record_command(data_config, image_size)
    print(
        f"recording {data_config.record_episodes} simulated demos into {data_config.episodes_dir}",
        flush=True,
    )
    code = subprocess.run(cmd, check=False).returncode
    if code != 0:
        raise RuntimeError(f"recording the sim demos failed (exit status {code}): {' '.join(cmd)}")
    return True


def ensure_dataset(data_config, image_size: Sequence[int]) -> Path:
    """Returns the dataset directory, building it from recorded episodes when it is missing.

    In order: an existing TFDS dataset is used as is; otherwise episodes in
    `config.data.episodes_dir` are built into one. Nothing is recorded here: `prepare` records
    missing sim demos first (`record_missing_demos`), a person records with
    `python -m hardware.record`.

    Raises:
      FileNotFoundError: naming the paths tried, when there is no dataset and no episodes.
      EpisodeDamaged: naming a damaged episode file (and the build command that skips it);
        nothing is built.
    """
    dataset_dir = dataset_dir_for(data_config)
    if (dataset_dir / "dataset_info.json").exists():
        return dataset_dir
    if data_config.dataset_dir:
        raise FileNotFoundError(
            f"no TFDS dataset at config.data.dataset_dir={dataset_dir} (dataset_info.json "
            "missing); build it with `python -m act_jax_datasets.episodes`, or leave "
            "dataset_dir empty to build from config.data.episodes_dir"
        )
    episodes_dir = Path(data_config.episodes_dir) if data_config.episodes_dir else None
    if episodes_dir is None or not list_episodes(episodes_dir):
        raise FileNotFoundError(
            f"no dataset at {dataset_dir} (dataset_info.json missing) and no episode files "
            f"in {episodes_dir or '(config.data.episodes_dir is empty)'} to build one from; "
            "record episodes with `python -m hardware.record`, or set "
            "config.data.record_episodes > 0 to have `python -m act_jax.train` record simulated "
            "demos"
        )
    from act_jax_datasets.episodes import build  # late: the builder imports TFDS (slow)

    print(f"building the TFDS dataset {dataset_dir} from {episodes_dir}")
    return build(episodes_dir, data_config.tfds_data_dir, data_config.name)
