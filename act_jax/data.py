"""The training data pipeline: episodes in memory, (frame, action chunk) batches, prefetching.

ACT learns from single observations paired with the next `chunk_size` actions. The pipeline:

1. `load_episodes` reads a built `act_episodes` TFDS dataset (array_record through
   `act_jax_datasets.episodes.load`, no TensorFlow), checking cameras and image sizes against the
   model config; a file that cannot be read back is named (`DatasetDamaged`). Frames are held
   one of two ways (`config.data.decode`):
   - "memory": every frame decoded once into uint8 arrays. The CPU default (100 episodes of ~155
     steps, two 96x128 cameras) takes ~1.1 GB.
   - "lazy": only the PNG bytes are held (16x smaller for sim frames at 96x128, 46x at 480x640)
     and the frames a batch needs are decoded on a thread pool (OpenCV releases the GIL). The
     seed config's 50 episodes of ~400 steps at 2x480x640 would need ~37 GB decoded.
   "auto" (the default) picks "memory" when the decoded size, estimated from the first episode,
   fits `config.data.memory_budget_gb`. Both give bit-identical batches: one decoder, applied
   before or after sampling. PNG bytes stay in memory rather than being re-read from array_record
   per frame because a record is a whole episode: one frame would read and parse all of them.
2. `split_episodes` holds out whole episodes for validation: frames of one episode are strongly
   correlated, so a per-frame split would leak.
3. `ChunkSampler.batch(step)` draws `(episode, t)` uniformly over all frames of the training
   episodes and returns the observation at `t` with actions `t .. t + chunk_size - 1`. Past the
   episode end the target repeats the last action and `action_is_pad` is True, so the loss ignores
   it. The draw depends only on `(seed, step)`: a resumed run sees exactly the batches it would
   have seen without the interruption, with no sampler state to checkpoint.
4. `Prefetcher` builds batches on a background thread and puts them on the devices with the batch
   sharding, a bounded queue ahead, so the accelerator does not wait on Python.

Batch layout (B = batch size, C = chunk size):
    images         dict camera -> (B, H, W, 3) uint8 (the model normalises images itself)
    state          (B, state_dim) float32, normalised
    actions        (B, C, action_dim) float32, normalised
    action_is_pad  (B, C) bool
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import jax
import numpy as np
from tqdm import tqdm

from act_jax.normalization import NormStats
from hardware.recording.episodes import list_episodes

DECODE_MODES = ("memory", "lazy", "auto")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def default_decode_threads() -> int:
    """Threads that decode PNG frames: one per core, at most 8 (a batch of 8 x 2 frames)."""
    return min(8, os.cpu_count() or 1)


@functools.cache
def _decode_pool(threads: int) -> ThreadPoolExecutor:
    # Shared by every sampler with the same thread count; idle threads cost nothing.
    return ThreadPoolExecutor(threads, thread_name_prefix="png-decode")


class PngFrames:
    """One camera's frames of one episode, held PNG-encoded; indexing decodes one frame.

    Args:
      png: the T PNG byte strings (a list, or a numpy object array of bytes).
      frame_shape: (H, W, 3), already checked against every frame's PNG header.
      where: names the dataset, episode and camera in decoding errors.
    """

    def __init__(self, png: Sequence[bytes], frame_shape: tuple[int, int, int], where: str):
        self._png, self.frame_shape, self._where = png, tuple(frame_shape), where

    def __len__(self) -> int:
        return len(self._png)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._png), *self.frame_shape)

    @property
    def nbytes(self) -> int:
        """Bytes of PNG held."""
        return sum(len(b) for b in self._png)

    def __getitem__(self, t: int) -> np.ndarray:
        """Frame t, (H, W, 3) uint8 RGB."""
        out = np.empty(self.frame_shape, np.uint8)
        self.decode_into(t, out)
        return out

    def decode_into(self, t: int, out: np.ndarray) -> None:
        """Decodes frame t into `out`, a C-contiguous (H, W, 3) uint8 array.

        The same pixels as `hardware.recording.episodes.decode_png` (and TFDS's OpenCV decoder): the
        channel swap is written straight into `out`, which halves the cost of a small frame.
        """
        bgr = cv2.imdecode(np.frombuffer(self._png[t], np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{self._where}, step {t}: corrupt PNG frame")
        if bgr.shape != self.frame_shape:
            raise ValueError(
                f"{self._where}, step {t}: decoded to {bgr.shape}, expected {self.frame_shape}"
            )
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out)
        if rgb.ctypes.data != out.ctypes.data:  # OpenCV allocated anew (out not contiguous)
            out[...] = rgb


def _png_size(png: bytes) -> tuple[int, int] | None:
    """(H, W) from a PNG's IHDR chunk, without decoding; None if it is not an RGB8 PNG."""
    if len(png) < 26 or png[:8] != _PNG_SIGNATURE or png[12:16] != b"IHDR":
        return None
    width, height, depth, color = struct.unpack(">IIBB", png[16:26])
    return (height, width) if depth == 8 and color == 2 else None


def _run_chunked(pool: ThreadPoolExecutor, threads: int, fn: Callable[[int], None], n: int):
    """fn(0), ..., fn(n - 1) on the pool, as `threads` contiguous runs: a task per frame would
    cost about as much as decoding a small one."""
    bounds = np.linspace(0, n, min(threads, n) + 1).astype(int)
    run = lambda lo, hi: [fn(k) for k in range(lo, hi)]
    for f in [pool.submit(run, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]:
        f.result()  # re-raises a decoding error here


def _decode_all(frames: PngFrames, threads: int) -> np.ndarray:
    out = np.empty(frames.shape, np.uint8)
    _run_chunked(_decode_pool(threads), threads, lambda t: frames.decode_into(t, out[t]), len(out))
    return out


def decode_options(data_config) -> dict:
    """`load_episodes`'s decode arguments from `config.data`, checked (call it before any I/O).

    Raises:
      ValueError: naming `config.data.decode` or `config.data.memory_budget_gb`.
    """
    return _checked_decode(data_config.decode, data_config.memory_budget_gb)


def _checked_decode(decode: str, memory_budget_gb: float) -> dict:
    if decode not in DECODE_MODES:
        raise ValueError(
            f"config.data.decode={decode!r}: must be one of {', '.join(map(repr, DECODE_MODES))}"
        )
    budget = memory_budget_gb
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        raise ValueError(f"config.data.memory_budget_gb={budget!r}: must be a number >= 0")
    return dict(decode=decode, memory_budget_gb=float(budget))


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
    _checked_decode(decode, memory_budget_gb)
    threads = decode_threads or default_decode_threads()
    source = png_source(dataset_dir)
    if len(source) == 0:
        raise ValueError(f"the dataset at {dataset_dir} holds no episodes")
    expected = (int(image_size[0]), int(image_size[1]), 3)
    episodes = []
    for i in tqdm(
        range(len(source)),
        desc=f"reading {Path(dataset_dir).parent.name} episodes",
        unit="ep",
        leave=False,
    ):
        ex = read_example(source, i, dataset_dir)
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
            # Every frame's size, from its PNG header: the check costs no decoding.
            sizes = [_png_size(b) for b in obs[cam]]
            if None in sizes:
                raise ValueError(
                    f"{where}: camera {cam!r} step {sizes.index(None)} is not an 8-bit RGB PNG"
                )
            wrong = set(sizes) - {expected[:2]}
            if wrong:
                raise ValueError(
                    f"{where}: camera {cam!r} frames are {(*min(wrong), 3)} but "
                    f"config.model.image_size asks for {expected}; record at that size or "
                    "change config.model.image_size"
                )
            images[cam] = PngFrames(obs[cam], expected, f"{where}, camera {cam!r}")
        state = np.asarray(obs["state"], np.float32)
        action = np.asarray(ex["action"], np.float32)
        for name, arr, dim in (("state", state, state_dim), ("action", action, action_dim)):
            if arr.ndim != 2 or arr.shape[1] != dim:
                raise ValueError(
                    f"{where}: {name} has shape {arr.shape}, the model expects (T, {dim})"
                )
        if len(state) == 0:
            raise ValueError(f"{where}: the episode has no steps")
        for cam, frames in images.items():
            if len(frames) != len(state):
                raise ValueError(
                    f"{where}: camera {cam!r} has {len(frames)} frames for {len(state)} steps"
                )
        if i == 0:  # Decide how to hold the frames, from an estimate of their size.
            decoded_gb = len(source) * len(state) * len(cameras) * np.prod(expected) / 2**30
            png_gb = len(source) * sum(f.nbytes for f in images.values()) / 2**30
            lazy = decode == "lazy" or (decode == "auto" and decoded_gb > memory_budget_gb)
            reason = f"config.data.decode={decode!r}"
            if decode == "auto":
                reason += (
                    f": ~{decoded_gb:.2f} GB decoded {'>' if lazy else '<='} "
                    f"config.data.memory_budget_gb={memory_budget_gb:g}"
                )
            how = "held as PNG, decoded per batch" if lazy else "decoded into memory"
            tqdm.write(
                f"data: frames {how} ({reason}); from the first of {len(source)} episodes: "
                f"~{decoded_gb:.2f} GB decoded, ~{png_gb:.2f} GB of PNG"
            )
        if not lazy:
            images = {cam: _decode_all(f, threads) for cam, f in images.items()}
        episodes.append(
            EpisodeData(index, images, state, action, bool(ex["episode_metadata"]["success"]))
        )
    return episodes


def split_episodes(
    num_episodes: int, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Splits episode positions into (train, validation), by episode, deterministically.

    With at least 2 episodes and `val_fraction > 0`, validation gets at least one episode and
    training keeps at least one.
    """
    if num_episodes <= 0:
        raise ValueError("cannot split zero episodes")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"config.data.val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = int(round(val_fraction * num_episodes))
    if val_fraction > 0 and num_episodes >= 2:
        n_val = min(max(n_val, 1), num_episodes - 1)
    else:
        n_val = 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def shift_and_brightness(images: np.ndarray, shifts: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Cheap image augmentation: a random translation and a brightness gain per image.

    A shift by (dy, dx) reads pixel (y + dy, x + dx), replicating the border where that falls
    outside (DrQ-style pad-and-crop). OpenCV does both in a few ms even at 480x640.

    Args:
      images: (B, H, W, 3) uint8.
      shifts: (B, 2) int, row and column offsets in [-max_shift, max_shift].
      gains: (B,) float multiplicative brightness.

    Returns:
      (B, H, W, 3) uint8.
    """
    _, h, w, _ = images.shape
    out = np.empty_like(images)
    for i, ((dy, dx), gain) in enumerate(zip(shifts, gains, strict=True)):
        img = images[i]
        if dy or dx:
            m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
            img = cv2.warpAffine(
                img,
                m,
                (w, h),
                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
        out[i] = cv2.convertScaleAbs(img, alpha=float(gain)) if gain != 1 else img
    return out


class ChunkSampler:
    """Draws batches of (observation at t, actions t..t+C-1) from episodes held in memory.

    Args:
      episodes: the episodes to draw from.
      norm_stats: applied to states and actions once, up front.
      chunk_size: C.
      batch_size: the global batch size B (over all processes).
      seed: with the step, determines every batch.
      max_shift, brightness: augmentation strength (0 turns each off).
      process_index, process_count: this process returns rows
        `[process_index * B / process_count, (process_index + 1) * B / process_count)` of the global
        batch, so the global batch is the same whatever the number of processes.
      decode_threads: threads that decode the batch's frames of lazy episodes (`PngFrames`);
        default `default_decode_threads()`.
    """

    def __init__(
        self,
        episodes: Sequence[EpisodeData],
        norm_stats: NormStats,
        chunk_size: int,
        batch_size: int,
        seed: int,
        *,
        max_shift: int = 0,
        brightness: float = 0.0,
        process_index: int = 0,
        process_count: int = 1,
        decode_threads: int | None = None,
    ):
        if not episodes:
            raise ValueError("ChunkSampler needs at least one episode")
        if batch_size % process_count:
            raise ValueError(
                f"batch size {batch_size} is not divisible by the {process_count} processes"
            )
        self.cameras = tuple(episodes[0].images)
        self.chunk_size, self.batch_size, self.seed = chunk_size, batch_size, seed
        self.max_shift, self.brightness = max_shift, brightness
        local = batch_size // process_count
        self._rows = slice(process_index * local, (process_index + 1) * local)
        self._images = [ep.images for ep in episodes]
        self._lazy = any(
            not isinstance(f, np.ndarray) for ep in episodes for f in ep.images.values()
        )
        self._threads = decode_threads or default_decode_threads()
        self._pool = _decode_pool(self._threads)
        self._state = [norm_stats.normalize_state(ep.state).astype(np.float32) for ep in episodes]
        # Actions padded at the end by repeating the last one, so every chunk is one slice.
        self._action = []
        for ep in episodes:
            a = norm_stats.normalize_action(ep.action).astype(np.float32)
            self._action.append(np.concatenate([a, np.repeat(a[-1:], chunk_size - 1, axis=0)]))
        self._length = np.array([len(ep) for ep in episodes])
        # Flat index over every frame: frame k is (episode _ep[k], step _t[k]).
        self._ep = np.repeat(np.arange(len(episodes)), self._length)
        self._t = np.concatenate([np.arange(n) for n in self._length])

    @property
    def num_frames(self) -> int:
        return len(self._ep)

    def gather(self, frames: np.ndarray) -> dict:
        """The batch for the given flat frame indices (no augmentation). frames: (B,) int."""
        eps, ts = self._ep[frames], self._t[frames]
        return {
            "images": self._gather_images(eps, ts),
            "state": np.stack([self._state[e][t] for e, t in zip(eps, ts, strict=True)]),
            **self.gather_targets(frames),
        }

    def gather_targets(self, frames: np.ndarray) -> dict:
        """{"actions" (B, C, A), "action_is_pad" (B, C)} of the given flat frame indices."""
        eps, ts = self._ep[frames], self._t[frames]
        steps = np.arange(self.chunk_size)
        return {
            "actions": np.stack(
                [self._action[e][t : t + self.chunk_size] for e, t in zip(eps, ts, strict=True)]
            ),
            "action_is_pad": steps[None, :] >= (self._length[eps] - ts)[:, None],
        }

    def _draw(self, step: int) -> tuple[np.random.Generator, np.ndarray]:
        """The step's generator, after it drew the global batch's flat frame indices."""
        rng = np.random.default_rng([self.seed, step])
        return rng, rng.integers(0, self.num_frames, size=self.batch_size)

    def frames_for(self, step: int) -> np.ndarray:
        """(B,) the flat frame indices of this process's rows of the global batch for `step`."""
        return self._draw(step)[1][self._rows]

    def _gather_images(self, eps: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        if not self._lazy:
            return {
                c: np.stack([self._images[e][c][t] for e, t in zip(eps, ts, strict=True)])
                for c in self.cameras
            }
        # Every (camera, row) frame decoded on the pool, straight into the batch arrays.
        out = {
            c: np.empty((len(eps), *self._images[0][c].shape[1:]), np.uint8) for c in self.cameras
        }
        jobs = [(c, i) for c in self.cameras for i in range(len(eps))]

        def fill(k):
            c, i = jobs[k]
            frames = self._images[eps[i]][c]
            if isinstance(frames, PngFrames):
                frames.decode_into(ts[i], out[c][i])
            else:
                out[c][i] = frames[ts[i]]

        _run_chunked(self._pool, self._threads, fill, len(jobs))
        return out

    def batch(self, step: int) -> dict:
        """This process's rows of the global batch for `step` (a pure function of seed, step)."""
        rng, frames = self._draw(step)
        # Augmentation parameters are drawn for the whole global batch, then sliced, so they too
        # are independent of the number of processes.
        n_img = self.batch_size * len(self.cameras)
        shifts = rng.integers(-self.max_shift, self.max_shift + 1, size=(n_img, 2))
        gains = rng.uniform(1 - self.brightness, 1 + self.brightness, size=n_img)
        batch = self.gather(frames[self._rows])
        if self.max_shift > 0 or self.brightness > 0:
            shifts = shifts.reshape(self.batch_size, len(self.cameras), 2)[self._rows]
            gains = gains.reshape(self.batch_size, len(self.cameras))[self._rows]
            batch["images"] = {
                c: shift_and_brightness(batch["images"][c], shifts[:, j], gains[:, j])
                for j, c in enumerate(self.cameras)
            }
        return batch

    def fixed_batches(self, num_batches: int) -> list[dict]:
        """Evenly spaced frames covering every episode, for a validation loss that is comparable
        from one evaluation to the next. Returns this process's rows of each batch."""
        n = num_batches * self.batch_size
        frames = np.linspace(0, self.num_frames - 1, n).round().astype(np.int64)
        return [
            self.gather(frames[i * self.batch_size : (i + 1) * self.batch_size][self._rows])
            for i in range(num_batches)
        ]


class Prefetcher:
    """Builds the batches for steps `start .. end-1` on a thread and puts them on the devices.

    Usage:
        with Prefetcher(sampler.batch, start, end, sharding) as batches:
            for step, batch in batches: ...

    `make_batch(step)` returns this process's rows; with several processes the rows are assembled
    into one global array with `jax.make_array_from_process_local_data`. Errors on the thread are
    re-raised in the consumer.
    """

    _DONE = object()

    def __init__(
        self,
        make_batch: Callable[[int], dict],
        start: int,
        end: int,
        sharding: jax.sharding.Sharding,
        size: int = 2,
    ):
        self._make_batch, self._start, self._end = make_batch, start, end
        self._sharding = sharding
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            for step in range(self._start, self._end):
                local = self._make_batch(step)
                batch = jax.tree.map(
                    lambda x: jax.make_array_from_process_local_data(self._sharding, x), local
                )
                if not self._put((step, batch)):
                    return
            self._put(self._DONE)
        except BaseException as e:  # noqa: B036 - handed to the consumer, which re-raises it
            self._put(e)

    def __enter__(self) -> Iterator[tuple[int, dict]]:
        self._thread.start()
        return self._iterate()

    def _iterate(self) -> Iterator[tuple[int, dict]]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


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


def ensure_dataset(data_config, image_size: Sequence[int]) -> Path:
    """Returns the dataset directory, building it from recorded episodes when it is missing.

    In order: an existing TFDS dataset is used as is; otherwise episodes in
    `config.data.episodes_dir` are built into one. Recording the episodes is not the trainer's
    job: `python -m act_jax.train` records missing sim demos first
    (`act_jax.sim_demos.record_missing_demos`), a person records with `python -m hardware.record`.

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
