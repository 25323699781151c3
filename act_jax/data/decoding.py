"""Decoding camera frames: PNG bytes held per episode (`PngFrames`), decoded on a thread pool.

Frames are held one of two ways (`config.data.decode`, checked by `decode_options`):
- "memory": every frame decoded once into uint8 arrays. The CPU default (100 episodes of ~155
  steps, two 96x128 cameras) takes ~1.1 GB.
- "lazy": only the PNG bytes are held (16x smaller for sim frames at 96x128, 46x at 480x640)
  and the frames a batch needs are decoded on a thread pool (OpenCV releases the GIL).
"auto" (the default) picks "memory" when the decoded size fits `config.data.memory_budget_gb`.
Both give bit-identical batches: one decoder, applied before or after sampling.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

DECODE_MODES = ("memory", "lazy", "auto")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def default_decode_threads() -> int:
    """Threads that decode PNG frames: one per core, at most 8 (a batch of 8 x 2 frames)."""
    return min(8, os.cpu_count() or 1)


@functools.cache
def decode_pool(threads: int) -> ThreadPoolExecutor:
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


def png_size(png: bytes) -> tuple[int, int] | None:
    """(H, W) from a PNG's IHDR chunk, without decoding; None if it is not an RGB8 PNG."""
    if len(png) < 26 or png[:8] != _PNG_SIGNATURE or png[12:16] != b"IHDR":
        return None
    width, height, depth, color = struct.unpack(">IIBB", png[16:26])
    return (height, width) if depth == 8 and color == 2 else None


def run_chunked(pool: ThreadPoolExecutor, threads: int, fn: Callable[[int], None], n: int):
    """fn(0), ..., fn(n - 1) on the pool, as `threads` contiguous runs: a task per frame would
    cost about as much as decoding a small one."""
    bounds = np.linspace(0, n, min(threads, n) + 1).astype(int)
    run = lambda lo, hi: [fn(k) for k in range(lo, hi)]
    for f in [pool.submit(run, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]:
        f.result()  # re-raises a decoding error here


def decode_all(frames: PngFrames, threads: int) -> np.ndarray:
    """Every frame of `frames`, (T, H, W, 3) uint8, decoded on `threads` threads."""
    out = np.empty(frames.shape, np.uint8)
    run_chunked(decode_pool(threads), threads, lambda t: frames.decode_into(t, out[t]), len(out))
    return out


def decode_options(data_config) -> dict:
    """`load_episodes`'s decode arguments from `config.data`, checked (call it before any I/O).

    Raises:
      ValueError: naming `config.data.decode` or `config.data.memory_budget_gb`.
    """
    return checked_decode(data_config.decode, data_config.memory_budget_gb)


def checked_decode(decode: str, memory_budget_gb: float) -> dict:
    """{"decode", "memory_budget_gb"}, checked; the ValueError names the config field."""
    if decode not in DECODE_MODES:
        raise ValueError(
            f"config.data.decode={decode!r}: must be one of {', '.join(map(repr, DECODE_MODES))}"
        )
    budget = memory_budget_gb
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        raise ValueError(f"config.data.memory_budget_gb={budget!r}: must be a number >= 0")
    return dict(decode=decode, memory_budget_gb=float(budget))
