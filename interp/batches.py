"""Fixed-size mini-batches over a set of frames, the last one padded with its final frame.

Every forward pass then has one shape, so the model is compiled once (a minute for the seed
architecture), and the padding is cut off afterwards. The one loop that the analyses
(`interp.absorption`, `interp.attention_analysis`, `interp.collect`, `interp.finetune_cache`)
run their frames through.

    for rows, keep in padded(n, 16):       # rows (16,) indices into the n frames
        out = fn(take(batch, rows))[:keep]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np


def padded(n: int, size: int) -> Iterator[tuple[np.ndarray, int]]:
    """(rows, keep) for consecutive pieces of `range(n)`: `rows` (size,) frame indices, the last
    piece filled up with frame n - 1; `keep` how many leading rows are real."""
    if n < 1 or size < 1:
        raise ValueError(f"padded batches need n >= 1 and size >= 1, got n={n}, size={size}")
    for start in range(0, n, size):
        yield np.minimum(np.arange(start, start + size), n - 1), min(size, n - start)


def take(batch: Mapping, rows: np.ndarray) -> dict:
    """The model inputs of `batch` ({"images": {camera: (B, ...)}, "state": (B, S)}) at `rows`."""
    return {
        "images": {c: np.asarray(v)[rows] for c, v in batch["images"].items()},
        "state": np.asarray(batch["state"])[rows],
    }


def in_batches(fn: Callable[[dict], np.ndarray], batch: Mapping, size: int) -> np.ndarray:
    """fn(sub-batch) -> (b, ...) over `batch` in pieces of `size` frames (at most all of them),
    concatenated without the padding."""
    n = len(batch["state"])
    out = [np.asarray(fn(take(batch, rows)))[:keep] for rows, keep in padded(n, min(size, n))]
    return np.concatenate(out)
