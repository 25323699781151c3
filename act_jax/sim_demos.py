"""Records the simulated demos a config asks for, before training: `config.data.record_episodes`.

`python -m act_jax.train` (and `python -m interp.freeze_finetune`) call `record_missing_demos`
before `train_and_evaluate`, so a run starts from nothing: no dataset and no episodes -> the
scripted expert records them in the sim, then the trainer builds the TFDS dataset from them
(`act_jax.data.ensure_dataset`). The trainer itself never records.

The recording runs as the recorder's own command in a child process,

    python -m hardware.record --robot sim --teleop expert --episodes N --out DIR \\
        --image-size HxW --seed S --distribution D

not by importing it: `act_jax` never imports the recorder (the import graph stays one way,
`tests/test_import_graph.py`), and the command line is the recorder's stable interface, the one
a person runs by hand. The same arguments always give the same files; an interrupted recording
is resumed by running again.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from act_jax.data import dataset_dir_for
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
        "--distribution",
        str(data_config.record_distribution),
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
