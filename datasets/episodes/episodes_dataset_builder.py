"""`act_episodes`: a TFDS dataset of recorded episodes (one example per episode).

Build (the config name becomes the dataset's name; the default sim data is `sim_demos`):

    python -m act_jax_datasets.episodes --episodes data/episodes/sim_demos \
        --data-dir data/tfds --name sim_demos

A damaged episode file (truncated, corrupt) stops the build, naming its path, index and what is
wrong (`EpisodeDamaged`), and nothing is written; `--skip-damaged` (`build(skip_damaged=True)`)
builds from the other episodes and names each one it left out. Example i is then the i-th good
episode: `episode_metadata/episode_index` still says which.

Read, without TensorFlow:

    from act_jax_datasets.episodes import load
    source = load("data/tfds/act_episodes/sim_demos/1.1.0")   # random access, len == #episodes
    ep = source[0]; ep["observation"]["top"]  # list of T (H, W, 3) uint8 frames

Files are array_record; frames are stored as PNG, so a dataset reads back exactly what the
recorder wrote. Examples keep the recording order (shuffling is the data pipeline's job).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from hardware.recording.episodes import EpisodeDamaged, list_episodes, read_episode

_FROM = "episodes from "  # the BuilderConfig description: where the episodes were
_STATE_DOC = "Measured joint positions at each step: degrees; gripper 0 (closed)..100 (open)."
_ACTION_DOC = "Commanded joint targets at each step, in the units of `state`."


class ActEpisodes(tfds.core.GeneratorBasedBuilder):
    """Episodes recorded by `hardware.record`, from the simulated or a real arm."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Episode format version 1.",
        "1.1.0": "Examples in episode order (1.0.0 wrote them in TFDS's hashed-key order).",
    }
    # Example i is the i-th episode by index: the pipeline splits train/validation by position.
    # TFDS reads this from DatasetInfo (`_info` passes it on); the class attribute alone is
    # ignored by tensorflow-datasets 4.9.
    disable_shuffling = True

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # TFDS locates checksums next to the builder through `importlib.resources` on the
        # top-level package, which fails for `act_jax_datasets` (a folder mapped by setup.cfg).
        return epath.Path(__file__)

    def __init__(
        self, *, episodes_dir: str | os.PathLike | None = None, skip_damaged: bool = False, **kwargs
    ):
        self._episodes_dir = Path(episodes_dir) if episodes_dir is not None else None
        self._skip_damaged = skip_damaged
        self.skipped: list[EpisodeDamaged] = []  # the damaged files left out, with skip_damaged
        super().__init__(**kwargs)

    def _episodes(self, episodes_dir: Path):
        """The episodes in order; a damaged one raises, or with `skip_damaged` is named on stderr
        and left out."""
        for path in list_episodes(episodes_dir):
            try:
                ep = read_episode(path)
            except EpisodeDamaged as e:
                if not self._skip_damaged:
                    raise
                if all(s.path != e.path for s in self.skipped):
                    self.skipped.append(e)
                    print(f"skipping {e}", file=sys.stderr, flush=True)
                continue
            yield ep

    def _first_meta(self):
        if self._episodes_dir is None:
            raise ValueError("ActEpisodes needs episodes_dir= to build")
        first = next(self._episodes(self._episodes_dir), None)
        if first is None:
            raise FileNotFoundError(
                f"no {'intact ' if self.skipped else ''}episode files (episode_NNNNNN.npz) in "
                f"{self._episodes_dir}: record some with `python -m hardware.record`"
            )
        return first.meta

    def _info(self) -> tfds.core.DatasetInfo:
        meta = self._first_meta()
        dim = len(meta.joint_names)
        image = lambda cam: tfds.features.Sequence(
            tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            doc=f"Camera {cam!r}, one RGB frame per step.",
        )
        observation = {cam: image(cam) for cam in meta.cameras}
        observation["state"] = tfds.features.Tensor(
            shape=(None, dim), dtype=np.float32, doc=_STATE_DOC
        )
        return tfds.core.DatasetInfo(
            builder=self,
            disable_shuffling=self.disable_shuffling,
            description=__doc__.split("\n")[0],
            features=tfds.features.FeaturesDict(
                {
                    "observation": observation,
                    "action": tfds.features.Tensor(
                        shape=(None, dim), dtype=np.float32, doc=_ACTION_DOC
                    ),
                    # Raw bytes: TFDS's default serialises floats as 32-bit (float_list), which
                    # would round float64 timestamps.
                    "timestamp": tfds.features.Tensor(
                        shape=(None,),
                        dtype=np.float64,
                        encoding=tfds.features.Encoding.BYTES,
                        doc="Seconds since the episode start.",
                    ),
                    "episode_metadata": {
                        "episode_index": tfds.features.Scalar(
                            np.int32, doc="Index in the recording session."
                        ),
                        "success": tfds.features.Scalar(np.bool_, doc="Task achieved."),
                        "fps": tfds.features.Scalar(np.float32, doc="Recording rate, Hz."),
                        "robot_type": tfds.features.Text(doc="e.g. sim_so101, koch, so101."),
                        "cube_start_pose": tfds.features.Tensor(
                            shape=(7,),
                            dtype=np.float32,
                            doc="Cube at reset: x, y, z (m), quaternion w, x, y, z; NaN unknown.",
                        ),
                        "location_id": tfds.features.Scalar(
                            np.int32, doc="Named start location, -1 for the continuous region."
                        ),
                        "seed": tfds.features.Scalar(np.int64, doc="Reset seed (sim), -1 none."),
                        "task": tfds.features.Text(doc="Natural-language task."),
                    },
                }
            ),
            metadata=tfds.core.MetadataDict(
                cameras=list(meta.cameras), joint_names=list(meta.joint_names)
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(self._episodes_dir)}

    def _generate_examples(self, episodes_dir: Path):
        for ep in self._episodes(episodes_dir):
            m = ep.meta
            yield (
                m.episode_index,
                make_example(
                    {cam: ep.png[cam] for cam in m.cameras},
                    ep.state,
                    ep.action,
                    ep.timestamp,
                    episode_index=m.episode_index,
                    success=m.success,
                    fps=m.fps,
                    robot_type=m.robot_type,
                    cube_start_pose=m.cube_start_pose,
                    location_id=m.location_id,
                    seed=m.seed,
                    task=m.task,
                ),
            )


def make_example(
    frames: Mapping[str, Sequence[bytes]],
    state,
    action,
    timestamp,
    *,
    episode_index: int,
    success: bool,
    fps: float,
    robot_type: str,
    cube_start_pose,
    location_id: int,
    seed: int,
    task: str,
) -> dict:
    """One `act_episodes` example (the features of `ActEpisodes._info`), for every builder that
    writes them: camera -> PNG frames, (T, 6) state and action, (T,) timestamps, metadata."""
    return {
        "observation": {**frames, "state": state},
        "action": action,
        "timestamp": timestamp,
        "episode_metadata": {
            "episode_index": episode_index,
            "success": success,
            "fps": fps,
            "robot_type": robot_type,
            "cube_start_pose": np.asarray(cube_start_pose, np.float32),
            "location_id": location_id,
            "seed": seed,
            "task": task,
        },
    }


def build(
    episodes_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    name: str = "sim_demos",
    skip_damaged: bool = False,
) -> Path:
    """Builds (or rebuilds) the dataset `act_episodes/<name>` from an episode directory.

    Args:
      skip_damaged: leave damaged episode files out (each is named on stderr) instead of
        refusing to build.

    Returns:
      The dataset directory, to pass to `load`.

    Raises:
      EpisodeDamaged: without `skip_damaged`, for the first damaged file (path, index, what is
        wrong, and the command that builds without it); no dataset is written.
    """
    config = tfds.core.BuilderConfig(name=name, description=f"{_FROM}{episodes_dir}")
    try:
        builder = ActEpisodes(
            episodes_dir=episodes_dir,
            data_dir=os.fspath(data_dir),
            config=config,
            file_format="array_record",
            skip_damaged=skip_damaged,
        )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
            )
        )
    except EpisodeDamaged as e:
        raise EpisodeDamaged(
            e.path,
            (
                f"{e.problem}. No dataset was built; to build one without it: python -m "
                f"act_jax_datasets.episodes --episodes {episodes_dir} --data-dir {data_dir} "
                f"--name {name} --skip-damaged"
            ),
        ) from e
    return Path(builder.data_dir)


def load(dataset_dir: str | os.PathLike, split: str = "train"):
    """Random-access source over a built dataset (no TensorFlow, no builder code needed).

    Raises:
      FileNotFoundError: naming the directory, if no dataset is there.
    """
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / "dataset_info.json").exists():
        raise FileNotFoundError(
            f"no TFDS dataset at {dataset_dir} (dataset_info.json missing): build one with "
            "`python -m act_jax_datasets.episodes`"
        )
    return tfds.builder_from_directory(os.fspath(dataset_dir)).as_data_source()[split]


def rebuild_hint(dataset_dir: str | os.PathLike) -> str:
    """How to build a (damaged) dataset again: for one this builder made, the exact command."""
    dataset_dir = Path(dataset_dir)
    try:
        info = json.loads((dataset_dir / "dataset_info.json").read_text())
    except (OSError, ValueError):
        info = {}
    description = info.get("configDescription", "")
    if info.get("moduleName") != __name__ or not description.startswith(_FROM):
        return f"remove {dataset_dir} and build it again with the command that made it"
    return (
        f"rebuild it: rm -r {dataset_dir} && python -m act_jax_datasets.episodes --episodes "
        f"{description.removeprefix(_FROM)} --data-dir {dataset_dir.parents[2]} "
        f"--name {info.get('configName', dataset_dir.parent.name)}"
    )
