"""`act_episodes` from a LeRobot dataset on local disk (format v2.0/v2.1 or v3.0).

Build (the dataset lands where `act_jax.train` looks for `config.data.name`):

    python -m act_jax_datasets.lerobot --src ~/.cache/huggingface/lerobot/user/koch_pick \
        --data-dir data/tfds --name koch_pick --image-size 96x128 \
        --camera-map top=observation.images.laptop --camera-map lateral=observation.images.phone

then train with `--config.data.name=koch_pick` (or `--config.data.dataset_dir=<printed path>`)
and `--config.model.cameras`/`--config.model.image_size` matching the printed summary.

The result is the same TFDS dataset `act_episodes` that `datasets/episodes` builds from our own
recordings (same features, version, PNG frames), so everything that reads one reads the other.
What maps where:

    observation.state             -> observation/state  (columns reordered to JOINT_NAMES)
    action                        -> action
    observation.images.<name>     -> observation/<name>  (or as --camera-map says), resized to
                                     --image-size, PNG-encoded; video frames are those nearest
                                     each row's `timestamp` (within tolerance_s)
    timestamp                     -> timestamp
    info.json fps / robot_type    -> episode_metadata/fps, robot_type
    the episode's first task      -> episode_metadata/task

LeRobot records no success flag, cube pose or seed: they are stored as False, NaN and -1.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from act_jax_datasets.episodes import ActEpisodes, make_example
from act_jax_datasets.lerobot.lerobot_format import LerobotSource
from hardware.conventions import FPS, GRIPPER_RANGE
from hardware.recording.episodes import EpisodeMeta, encode_png


def parse_camera_map(items: Sequence[str]) -> dict[str, str] | None:
    """['top=observation.images.laptop', 'lateral=phone'] -> {'top': ..., 'lateral': ...}."""
    out = {}
    for item in (part for it in items for part in it.split(",") if part.strip()):
        name, sep, key = item.partition("=")
        if not sep or not name.strip() or not key.strip():
            raise ValueError(
                f"camera map {item!r}: expected NAME=FEATURE, e.g. top=observation.images.laptop"
            )
        if name.strip() in out:
            raise ValueError(f"camera map: camera {name.strip()!r} given twice")
        out[name.strip()] = key.strip()
    return out or None


@dataclasses.dataclass
class Conversion:
    """What a build did: printed by the CLI."""

    dataset_dir: Path
    source: LerobotSource
    image_size: tuple[int, int] | None
    episodes: int = 0
    frames: int = 0
    seconds: float = 0.0
    state_min: np.ndarray | None = None
    state_max: np.ndarray | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        src = self.source
        lines = [
            f"LeRobot {src.version} dataset {src.root} (robot_type={src.robot_type}, "
            f"fps={src.fps:g})"
        ]
        lines.append(
            f"converted {self.episodes} episodes, {self.frames} frames in "
            f"{self.seconds:.1f} s -> {self.dataset_dir}"
        )
        for cam in src.cameras:
            size = self.image_size or cam.shape[:2]
            lines.append(
                f"  camera {cam.name!r} <- {cam.key} ({cam.kind}, {cam.shape[0]}x"
                f"{cam.shape[1]} -> {size[0]}x{size[1]} PNG)"
            )
        lines.append(f"  state/action joints: {', '.join(src.joint_names)}")
        if self.state_min is not None:
            ranges = ", ".join(
                f"{j} [{lo:.1f}, {hi:.1f}]"
                for j, lo, hi in zip(src.joint_names, self.state_min, self.state_max, strict=True)
            )
            lines.append(f"  state ranges: {ranges}")
        lines += [f"  note: {n}" for n in self.notes]
        cams = ",".join(f'"{c.name}"' for c in src.cameras)
        cams += "," if len(src.cameras) == 1 else ""
        size = self.image_size or src.cameras[0].shape[:2]
        lines.append(
            f"train: python -m act_jax.train --config configs/sim_default.py "
            f"--config.data.dataset_dir={self.dataset_dir} "
            f"'--config.model.cameras=({cams})' "
            f"'--config.model.image_size=({size[0]}, {size[1]})' "
            f"--config.model.state_dim={len(src.joint_names)} "
            f"--config.model.action_dim={len(src.joint_names)}"
        )
        return "\n".join(lines)


class LerobotActEpisodes(ActEpisodes, skip_registration=True):
    """`act_episodes` built from a LeRobot dataset instead of our episode files."""

    # The same dataset as datasets/episodes builds: same name, features and version.
    name = "act_episodes"

    def __init__(self, *, conversion: Conversion | None = None, **kwargs):
        self._conversion = conversion
        super().__init__(episodes_dir=None, **kwargs)

    def _first_meta(self):
        if self._conversion is None:
            raise ValueError("LerobotActEpisodes needs conversion= to build")
        src = self._conversion.source
        return EpisodeMeta(
            episode_index=0,
            fps=src.fps,
            robot_type=src.robot_type,
            cameras=tuple(c.name for c in src.cameras),
            joint_names=tuple(src.joint_names),
        )

    def _info(self) -> tfds.core.DatasetInfo:
        info = super()._info()
        src = self._conversion.source
        info.metadata.update(
            lerobot_source=str(src.root),
            lerobot_version=src.version,
            camera_keys={c.name: c.key for c in src.cameras},
        )
        return info

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(None)}

    def _generate_examples(self, episodes_dir):
        del episodes_dir
        conv = self._conversion
        src, size = conv.source, conv.image_size

        def to_png(rgb: np.ndarray) -> bytes:
            if size is not None and rgb.shape[:2] != size:
                shrink = size[0] < rgb.shape[0]
                rgb = cv2.resize(
                    rgb,
                    (size[1], size[0]),
                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
                )
            return encode_png(np.ascontiguousarray(rgb))

        t0 = time.perf_counter()
        bar = tqdm(src.episodes, desc=f"converting {src.root.name}", unit="ep")
        for ref in bar:
            ep = src.read(ref, to_png)
            conv.episodes += 1
            conv.frames += len(ep.state)
            lo, hi = ep.state.min(0), ep.state.max(0)
            conv.state_min = lo if conv.state_min is None else np.minimum(conv.state_min, lo)
            conv.state_max = hi if conv.state_max is None else np.maximum(conv.state_max, hi)
            conv.seconds = time.perf_counter() - t0
            bar.set_postfix(frames=conv.frames)
            yield (
                ep.index,
                make_example(
                    ep.frames,
                    ep.state,
                    ep.action,
                    ep.timestamp,
                    episode_index=ep.index,
                    success=False,
                    fps=src.fps,
                    robot_type=src.robot_type,
                    cube_start_pose=np.full(7, np.nan),
                    location_id=-1,
                    seed=-1,
                    task=ep.task,
                ),
            )


def _notes(conv: Conversion) -> list[str]:
    """Differences from our conventions worth a line in the summary."""
    src, notes = conv.source, list(conv.source.notes)
    if abs(src.fps - FPS) > 1e-6:
        notes.append(
            f"fps={src.fps:g}, our recordings run at {FPS}: config.model.chunk_size "
            f"counts steps, so a chunk spans chunk_size/{src.fps:g} s here"
        )
    features = src.info["features"]
    used = {"observation.state", "action"} | {c.key for c in src.cameras}
    skipped = sorted(
        k
        for k, v in features.items()
        if k not in used
        and k not in ("timestamp", "frame_index", "episode_index", "index", "task_index")
    )
    if skipped:
        notes.append(f"not converted: {', '.join(skipped)}")
    if conv.state_max is not None and "gripper" in src.joint_names:
        g = src.joint_names.index("gripper")
        lo, hi = float(conv.state_min[g]), float(conv.state_max[g])
        if lo < GRIPPER_RANGE[0] - 1 or hi > GRIPPER_RANGE[1] + 1:
            notes.append(
                f"gripper state spans [{lo:.1f}, {hi:.1f}], outside our 0..100: the "
                "dataset may use other units (check the robot's calibration)"
            )
    if conv.state_max is not None and np.abs(np.r_[conv.state_min, conv.state_max]).max() <= 100:
        notes.append(
            "all joints lie within +-100: LeRobot records degrees only with "
            "use_degrees=True, else -100..100 per joint; ours are degrees"
        )
    return notes


def build(
    src: str | os.PathLike,
    data_dir: str | os.PathLike,
    name: str,
    *,
    image_size: tuple[int, int] | None = None,
    camera_map: Mapping[str, str] | None = None,
    tolerance_s: float = 1e-4,
    keep_joint_order: bool = False,
) -> Conversion:
    """Converts (again, if built before) LeRobot's `src` to `<data_dir>/act_episodes/<name>/1.1.0`.

    Args:
      image_size: (H, W) of the stored frames; None keeps the source size.
      camera_map: our camera name -> LeRobot feature (see `LerobotSource`).
      tolerance_s: accepted gap between a timestamp and its video frame (LeRobot's default).
      keep_joint_order: accept joint names that are not our JOINT_NAMES, in the dataset's order.

    Returns:
      A `Conversion` whose `dataset_dir` is what `act_jax_datasets.episodes.load` and
      `config.data.dataset_dir` take, and whose `str()` is a summary.

    Raises:
      FileNotFoundError, ValueError: naming the LeRobot file and field at fault.
    """
    source = LerobotSource(src, camera_map, tolerance_s, keep_joint_order)
    conv = Conversion(Path(), source, tuple(image_size) if image_size else None)
    config = tfds.core.BuilderConfig(name=name, description=f"LeRobot dataset {src}")
    builder = LerobotActEpisodes(
        conversion=conv, data_dir=os.fspath(data_dir), config=config, file_format="array_record"
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
        )
    )  # rebuilds the dataset
    conv.dataset_dir = Path(builder.data_dir)
    conv.notes = _notes(conv)
    return conv
