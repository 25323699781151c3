"""Sampling training batches: episodes split for validation, (frame, action chunk) batches drawn.

`split_episodes` holds out whole episodes for validation: frames of one episode are strongly
correlated, so a per-frame split would leak. `ChunkSampler.batch(step)` draws `(episode, t)`
uniformly over all frames of the training episodes and returns the observation at `t` with
actions `t .. t + chunk_size - 1`. Past the episode end the target repeats the last action and
`action_is_pad` is True, so the loss ignores it. The draw depends only on `(seed, step)`: a resumed
run sees exactly the batches it would have seen without the interruption, with no sampler state
to checkpoint. The batch layout is in `act_jax.data`'s docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from act_jax.data.decoding import PngFrames, decode_pool, default_decode_threads, run_chunked
from act_jax.data.loading import EpisodeData
from act_jax.normalization import NormStats


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
        self._pool = decode_pool(self._threads)
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

        run_chunked(self._pool, self._threads, fill, len(jobs))
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
