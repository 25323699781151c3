"""Loading a built `act_episodes` TFDS dataset into memory, checked against the model config.

`load_episodes` reads every example (array_record through `act_jax_datasets.episodes.load`, no
TensorFlow), checking cameras, image sizes and state/action widths; a file that cannot be read
back is named (`DatasetDamaged`). Frames stay PNG (`PngFrames`) or are decoded up front, as
`config.data.decode` says (`act_jax.data.decoding`). PNG bytes stay in memory rather than being
re-read from array_record per frame because a record is a whole episode: one frame would read
and parse all of them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from act_jax.data.decoding import (
    PngFrames,
    checked_decode,
    decode_all,
    default_decode_threads,
    png_size,
)


@dataclasses.dataclass
class EpisodeData:
    """One decoded episode (T steps).

    Attributes:
      episode_index: index of the episode in its recording session.
      images: camera -> (T, H, W, 3) uint8 RGB: an array, or `PngFrames` that decode on indexing
        (`load_episodes(decode="lazy")`).
      state: (T, state_dim) float32, raw units.
      action: (T, action_dim) float32, raw units.
      success: whether the demo achieved the task.
    """

    episode_index: int
    images: dict[str, np.ndarray | PngFrames]
    state: np.ndarray
    action: np.ndarray
    success: bool

    def __len__(self) -> int:
        return len(self.state)


def held_image_bytes(episodes: Sequence[EpisodeData]) -> int:
    """Bytes of image data the episodes hold: decoded arrays, or PNG for lazy episodes."""
    return sum(f.nbytes for ep in episodes for f in ep.images.values())


class DatasetDamaged(ValueError):
    """A built dataset with a file that cannot be read back (truncated, corrupt)."""


def read_example(source, i: int, dataset_dir: str | os.PathLike) -> dict:
    """`source[i]`, naming what is damaged when it cannot be read: the array_record reader says
    only "Corrupted Riegeli/records file" (or, truncated, hands TFDS an empty record).

    Raises:
      DatasetDamaged: naming the dataset directory, the file holding example i, what the reader
        said, and the command that builds the dataset again.
    """
    try:
        return source[i]
    except (RuntimeError, ValueError) as e:
        from act_jax_datasets.episodes import rebuild_hint

        split = source.dataset_info.splits[source.split]
        shard = int(np.searchsorted(np.cumsum(split.shard_lengths), i, side="right"))
        said = "no record came back: truncated?" if "NoneType" in str(e) else str(e)
        raise DatasetDamaged(
            f"{dataset_dir}: example {i} cannot be read from {Path(split.filepaths[shard]).name}"
            f", the file is damaged ({said}); {rebuild_hint(dataset_dir)}"
        ) from e


def png_source(dataset_dir: str | os.PathLike):
    """The dataset's random-access source, with camera frames handed over as PNG bytes."""
    import tensorflow_datasets as tfds  # TFDS import is slow; only pay it when reading.

    from act_jax_datasets.episodes import load

    class KeepPng(tfds.decode.SkipDecoding):
        # SkipDecoding lacks the numpy path for a sequence of images: the bytes pass through.
        def decode_batch_example_np(self, serialized):
            return serialized

    source = load(dataset_dir)
    cameras = [k for k in source.dataset_info.features["observation"].keys() if k != "state"]
    return dataclasses.replace(source, decoders={"observation": {c: KeepPng() for c in cameras}})


def load_episodes(
    dataset_dir: str | os.PathLike,
    cameras: Sequence[str],
    image_size: Sequence[int],
    state_dim: int,
    action_dim: int,
    *,
    decode: str = "memory",
    memory_budget_gb: float = 8.0,
    decode_threads: int | None = None,
) -> list[EpisodeData]:
    """Reads a whole `act_episodes` dataset, checking it fits the model.

    Args:
      decode: "memory" decodes every frame now; "lazy" keeps the PNG bytes (`PngFrames`); "auto"
        is "memory" when the decoded size, estimated from the first episode, is at most
        `memory_budget_gb`, else "lazy". The choice and its reason are printed.
      decode_threads: threads that decode (default `default_decode_threads()`).

    Raises:
      FileNotFoundError: naming the directory, if no dataset is there.
      DatasetDamaged: naming the dataset, file and example that cannot be read back.
      ValueError: naming the dataset, episode and field, for an empty dataset, a missing camera,
        frames whose size differs from `image_size`, or state/action of the wrong width; naming
        `config.data.decode` for an unknown mode.
    """
    checked_decode(decode, memory_budget_gb)
    threads = decode_threads or default_decode_threads()
    source = png_source(dataset_dir)
    if len(source) == 0:
        raise ValueError(f"the dataset at {dataset_dir} holds no episodes")
    frame_shape = (int(image_size[0]), int(image_size[1]), 3)
    episodes = []
    for i in tqdm(
        range(len(source)),
        desc=f"reading {Path(dataset_dir).parent.name} episodes",
        unit="ep",
        leave=False,
    ):
        ex = read_example(source, i, dataset_dir)
        episode = episode_from_example(ex, dataset_dir, cameras, frame_shape, state_dim, action_dim)
        if i == 0:  # Decide how to hold the frames, from an estimate of their size.
            lazy = _hold_lazily(episode, len(source), decode, memory_budget_gb)
        if not lazy:
            episode.images = {cam: decode_all(f, threads) for cam, f in episode.images.items()}
        episodes.append(episode)
    return episodes


def episode_from_example(
    ex: dict,
    dataset_dir: str | os.PathLike,
    cameras: Sequence[str],
    frame_shape: tuple[int, int, int],
    state_dim: int,
    action_dim: int,
) -> EpisodeData:
    """One dataset example as an `EpisodeData` whose frames are still PNG, checked.

    Every frame's size is read from its PNG header, so the check costs no decoding.

    Raises:
      ValueError: naming the dataset, the episode and what does not fit the model.
    """
    index = int(ex["episode_metadata"]["episode_index"])
    where = f"{dataset_dir}, episode {index}"
    obs = ex["observation"]
    images = {}
    for cam in cameras:
        if cam not in obs:
            have = sorted(k for k in obs if k != "state")
            raise ValueError(
                f"{where}: no camera {cam!r} (the dataset has {have}); "
                "set config.model.cameras to match"
            )
        sizes = [png_size(b) for b in obs[cam]]
        if None in sizes:
            raise ValueError(
                f"{where}: camera {cam!r} step {sizes.index(None)} is not an 8-bit RGB PNG"
            )
        wrong = set(sizes) - {frame_shape[:2]}
        if wrong:
            raise ValueError(
                f"{where}: camera {cam!r} frames are {(*min(wrong), 3)} but "
                f"config.model.image_size asks for {frame_shape}; record at that size or "
                "change config.model.image_size"
            )
        images[cam] = PngFrames(obs[cam], frame_shape, f"{where}, camera {cam!r}")
    state = np.asarray(obs["state"], np.float32)
    action = np.asarray(ex["action"], np.float32)
    for name, arr, dim in (("state", state, state_dim), ("action", action, action_dim)):
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise ValueError(f"{where}: {name} has shape {arr.shape}, the model expects (T, {dim})")
    if len(state) == 0:
        raise ValueError(f"{where}: the episode has no steps")
    for cam, frames in images.items():
        if len(frames) != len(state):
            raise ValueError(
                f"{where}: camera {cam!r} has {len(frames)} frames for {len(state)} steps"
            )
    success = bool(ex["episode_metadata"]["success"])
    return EpisodeData(index, images, state, action, success)


def _hold_lazily(first: EpisodeData, num_episodes: int, decode: str, budget_gb: float) -> bool:
    """Whether to keep frames as PNG, estimated from the first episode's size; says why."""
    frame_bytes = sum(np.prod(f.frame_shape) for f in first.images.values())
    decoded_gb = num_episodes * len(first) * frame_bytes / 2**30
    png_gb = num_episodes * sum(f.nbytes for f in first.images.values()) / 2**30
    lazy = decode == "lazy" or (decode == "auto" and decoded_gb > budget_gb)
    reason = f"config.data.decode={decode!r}"
    if decode == "auto":
        reason += (
            f": ~{decoded_gb:.2f} GB decoded {'>' if lazy else '<='} "
            f"config.data.memory_budget_gb={budget_gb:g}"
        )
    how = "held as PNG, decoded per batch" if lazy else "decoded into memory"
    tqdm.write(
        f"data: frames {how} ({reason}); from the first of {num_episodes} episodes: "
        f"~{decoded_gb:.2f} GB decoded, ~{png_gb:.2f} GB of PNG"
    )
    return lazy


def dataset_dir_for(data_config) -> Path:
    """The TFDS dataset directory named by `config.data` (an explicit `dataset_dir` wins)."""
    if data_config.dataset_dir:
        return Path(data_config.dataset_dir)
    from act_jax_datasets.episodes import ActEpisodes  # late: the builder imports TFDS (slow)

    return (
        Path(data_config.tfds_data_dir)
        / "act_episodes"
        / data_config.name
        / str(ActEpisodes.VERSION)
    )
