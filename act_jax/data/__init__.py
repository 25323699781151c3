"""The training data pipeline: episodes in memory, (frame, action chunk) batches, prefetching.

ACT learns from single observations paired with the next `chunk_size` actions. The pipeline, one
module a stage:

1. `loading`: `load_episodes` reads a built `act_episodes` TFDS dataset, checked against the
   model config (`dataset_dir_for` says where `config.data` puts it); a file that cannot be read
   back is named (`DatasetDamaged`).
2. `decoding`: frames are held decoded or as PNG (`PngFrames`, decoded per batch on a thread
   pool), as `config.data.decode` says; both give bit-identical batches. The seed config's 100
   sim demos of ~156 steps at 2x480x640 would need ~27 GiB decoded (~0.6 GiB as PNG).
3. `sampling`: `split_episodes` holds out whole episodes for validation; `ChunkSampler.batch(step)`
   draws a batch that is a pure function of (seed, step), so a resumed run sees the same batches.
4. `prefetch`: `Prefetcher` builds batches on a thread and puts them on the devices with the
   batch sharding, a bounded queue ahead.

Building the dataset when it is missing (and recording sim demos for it) is not the pipeline's
job: the train app does it first, `act_jax.prepare_data`.

Batch layout (B = batch size, C = chunk size):
    images         dict camera -> (B, H, W, 3) uint8 (the model normalises images itself)
    state          (B, state_dim) float32, normalised
    actions        (B, C, action_dim) float32, normalised
    action_is_pad  (B, C) bool
"""

from __future__ import annotations

import warnings

from act_jax.data.decoding import DECODE_MODES, PngFrames, decode_options, default_decode_threads
from act_jax.data.loading import (
    DatasetDamaged,
    EpisodeData,
    dataset_dir_for,
    episode_from_example,
    held_image_bytes,
    load_episodes,
    png_source,
    read_example,
)
from act_jax.data.prefetch import Prefetcher
from act_jax.data.sampling import ChunkSampler, shift_and_brightness, split_episodes

__all__ = [
    "DECODE_MODES",
    "ChunkSampler",
    "DatasetDamaged",
    "EpisodeData",
    "PngFrames",
    "Prefetcher",
    "dataset_dir_for",
    "decode_options",
    "default_decode_threads",
    "episode_from_example",
    "held_image_bytes",
    "load_episodes",
    "png_source",
    "read_example",
    "shift_and_brightness",
    "split_episodes",
]


def __getattr__(name: str):
    # The old home of `ensure_dataset`, kept for one release (scripts may call it from here).
    if name == "ensure_dataset":
        warnings.warn(
            "act_jax.data.ensure_dataset moved to act_jax.prepare_data.ensure_dataset",
            DeprecationWarning,
            stacklevel=2,
        )
        from act_jax import prepare_data

        return prepare_data.ensure_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
