"""The action lookup table (ALT): a policy that acts exactly like a lookup table.

For each observation it finds the nearest training frame and returns the action chunk that was
recorded from that frame on (the training target: actions t .. t + C - 1, the last action
repeated past the episode's end, as `act_jax.data.ChunkSampler` builds them). Executed with the
same chunk execution as ACT (`act_jax.execution`), it is the lookup baseline ACT is compared
with: if ACT were a lookup table over its demos, it would act like this.

Keys (`key="pixels"`): every camera's image shrunk to `key_size` (area averaging), and the
joint state. Each key dimension is standardised over the training frames, and each block
(one per camera, and the state) divided by the square root of its width, so that the state's
6 numbers weigh as much as a camera's hundreds of pixels.

`predict_chunk` also sets `last_distance`, the key-space distance to the nearest training
frame: an out-of-distribution score (0 on a training frame).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from act_jax.execution import Executor, chunk_controller

KEY_SIZE = (12, 16)  # (H, W) each camera shrinks to for the pixel key


def chunks_of(action: np.ndarray, chunk_size: int) -> np.ndarray:
    """(T, C, A) the training target chunk of every frame of one episode."""
    padded = np.concatenate([action, np.repeat(action[-1:], chunk_size - 1, axis=0)])
    idx = np.arange(len(action))[:, None] + np.arange(chunk_size)[None]
    return padded[idx]


def pixel_key(
    images: dict[str, np.ndarray],
    state: np.ndarray,
    cameras: Sequence[str],
    key_size: tuple[int, int] = KEY_SIZE,
) -> list[np.ndarray]:
    """Raw key blocks of one frame: one per camera (shrunk image, flattened), then the state."""
    h, w = key_size
    blocks = [
        cv2.resize(np.asarray(images[c]), (w, h), interpolation=cv2.INTER_AREA)
        .astype(np.float32)
        .ravel()
        / 255.0
        for c in cameras
    ]
    return blocks + [np.asarray(state, np.float32)]


class ActionLookupTable:
    """Nearest-training-frame lookup over (key, chunk) pairs (module docstring).

    Args:
      keys: (N, D) raw keys of the training frames (blocks concatenated).
      chunks: (N, C, A) their recorded chunks.
      block_sizes: widths of the key's blocks, in order.
      cameras, key_size: what the key is made of.
      frame_ids: (N, 2) episode index and frame of each row (for reports).
    """

    def __init__(
        self,
        keys: np.ndarray,
        chunks: np.ndarray,
        block_sizes: Sequence[int],
        cameras: Sequence[str],
        key_size: tuple[int, int] = KEY_SIZE,
        frame_ids: np.ndarray | None = None,
    ):
        keys = np.asarray(keys, np.float32)
        if len(keys) != len(chunks) or not len(keys):
            raise ValueError(
                f"{len(keys)} keys for {len(chunks)} chunks: need one chunk a key, and at least one"
            )
        if sum(block_sizes) != keys.shape[1]:
            raise ValueError(f"key blocks {list(block_sizes)} do not add up to {keys.shape[1]}")
        self.cameras, self.key_size = tuple(cameras), tuple(key_size)
        self.chunks = np.asarray(chunks, np.float32)
        self.frame_ids = frame_ids
        self.mean = keys.mean(0)
        std = keys.std(0)
        self.std = np.where(std > 1e-6, std, 1.0)  # a constant pixel carries no information
        self.scale = np.concatenate([np.full(n, 1 / np.sqrt(n), np.float32) for n in block_sizes])
        self.table = self._standardise(keys)
        self.sq_norms = (self.table**2).sum(1)
        self.last_distance = float("nan")
        self.last_index = -1

    def _standardise(self, keys: np.ndarray) -> np.ndarray:
        return ((keys - self.mean) / self.std * self.scale).astype(np.float32)

    @classmethod
    def from_episodes(
        cls, episodes, chunk_size: int, cameras: Sequence[str], key_size: tuple[int, int] = KEY_SIZE
    ) -> ActionLookupTable:
        """From decoded `act_jax.data.EpisodeData` (every frame becomes a row)."""
        keys, chunks, ids, sizes = [], [], [], None
        for ep in episodes:
            for t in range(len(ep)):
                blocks = pixel_key(
                    {c: ep.images[c][t] for c in cameras}, ep.state[t], cameras, key_size
                )
                sizes = sizes or [len(b) for b in blocks]
                keys.append(np.concatenate(blocks))
                ids.append((ep.episode_index, t))
            chunks.append(chunks_of(ep.action, chunk_size))
        return cls(
            np.stack(keys), np.concatenate(chunks), sizes, cameras, key_size, np.asarray(ids)
        )

    @classmethod
    def from_dataset(cls, dataset_dir, config, key_size: tuple[int, int] = KEY_SIZE):
        """From an `act_episodes` dataset, with the cameras, image size and chunk size of an
        experiment config (the checkpoint it is compared with)."""
        from act_jax.data import load_episodes

        m = config.model
        episodes = load_episodes(
            dataset_dir, m.cameras, m.image_size, m.state_dim, m.action_dim, decode="memory"
        )
        return cls.from_episodes(episodes, m.chunk_size, m.cameras, key_size)

    def __len__(self) -> int:
        return len(self.table)

    def lookup(self, observation: dict) -> int:
        """Row of the nearest training frame; sets `last_distance` and `last_index`."""
        images = observation.get("images", {})
        missing = [c for c in self.cameras if c not in images]
        if missing:
            raise ValueError(
                f"observation lacks camera(s) {missing}; the lookup table keys on "
                f"{list(self.cameras)}"
            )
        q = self._standardise(
            np.concatenate(pixel_key(images, observation["state"], self.cameras, self.key_size))[
                None
            ]
        )[0]
        i = int(np.argmin(self.sq_norms - 2 * self.table @ q))  # |t - q|^2 less |q|^2
        self.last_index = i
        self.last_distance = float(np.linalg.norm(self.table[i] - q))  # without cancellation
        return i

    def predict_chunk(self, observation: dict) -> np.ndarray:
        """(C, A) the recorded chunk of the nearest training frame, in robot units."""
        return self.chunks[self.lookup(observation)].copy()

    def as_controller(self, executor: Executor) -> Callable[[dict], np.ndarray]:
        """An observation -> (A,) action callable for one episode (as `Policy.as_controller`)."""
        return chunk_controller(self.predict_chunk, executor)
