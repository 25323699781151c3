"""Tiny synthetic episode datasets for the data, training and checkpoint tests.

Episodes go through the real path: `hardware.recording.episodes.write_episode` writes episode
files and `act_jax_datasets.episodes.build` builds the TFDS (array_record) dataset that the
trainer reads.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zipfile
from pathlib import Path

import jax
import numpy as np

from act_jax_datasets.episodes import build
from hardware.recording.episodes import EpisodeMeta, encode_png, write_episode

CAMERAS = ("top", "lateral")


def synthetic_episode(
    rng: np.random.Generator, index: int, steps: int, image_size: tuple[int, int], cameras=CAMERAS
) -> dict:
    """A smooth random joint trajectory with frames whose brightness follows the first joint,
    so images carry information about the state (a model can learn something from them)."""
    h, w = image_size
    state = np.cumsum(rng.normal(0, 2.0, (steps, 6)), axis=0).astype(np.float32)
    state[:, 5] = np.clip(50 + state[:, 5], 0, 100)
    action = np.concatenate([state[1:], state[-1:]]).astype(np.float32)
    png = {}
    for j, cam in enumerate(cameras):
        frames = []
        for t in range(steps):
            base = np.uint8((128 + 3 * state[t, j]) % 256)
            img = np.full((h, w, 3), base, np.uint8)
            img[: h // 2, : w // 2] = rng.integers(0, 256, (h // 2, w // 2, 3), dtype=np.uint8)
            frames.append(encode_png(img))
        png[cam] = frames
    return dict(
        state=state,
        action=action,
        timestamp=np.arange(steps) / 30.0,
        png=png,
        meta=EpisodeMeta(
            episode_index=index,
            robot_type="synthetic",
            success=bool(index % 2),
            seed=index,
            cameras=tuple(cameras),
        ),
    )


def write_episodes(
    episodes_dir: Path,
    num_episodes: int = 4,
    steps: int = 12,
    image_size: tuple[int, int] = (32, 32),
    seed: int = 0,
    cameras=CAMERAS,
) -> list[dict]:
    """Writes `num_episodes` synthetic episodes (lengths `steps`, `steps`+1, ...)."""
    rng = np.random.default_rng(seed)
    written = []
    for i in range(num_episodes):
        ep = synthetic_episode(rng, i, steps + i, image_size, cameras)
        write_episode(episodes_dir, **ep)
        written.append(ep)
    return written


def build_dataset(root: Path, name: str = "tiny", **kwargs) -> Path:
    """Writes synthetic episodes under `root/episodes` and builds `root/tfds`. Returns the
    dataset directory (what `config.data.dataset_dir` takes)."""
    write_episodes(root / "episodes", **kwargs)
    return build(root / "episodes", root / "tfds", name)


DAMAGE = ("truncated", "bit_flipped", "empty")


def damage_episode(path: Path, how: str) -> bytes:
    """Damages an episode file as a disk or a copy would; returns the damaged bytes.

    "truncated": the first half is kept; "empty": 0 bytes; "bit_flipped": one bit flipped in the
    middle of the state array's data (the archive stays readable: only its CRC-32 tells).
    """
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    elif how == "empty":
        raw = bytearray()
    elif how == "bit_flipped":
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("state.npy")
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 :][:4])
        raw[info.header_offset + 30 + name_len + extra_len + info.compress_size // 2] ^= 0x04
    else:
        raise ValueError(f"damage how={how!r}: one of {DAMAGE}")
    path.write_bytes(bytes(raw))
    return bytes(raw)


def tiny_sim_run(root: Path, *, episodes: int, distribution: str) -> Path:
    """The tiny config trained 2 steps on `episodes` scripted sim demos (32x32) recorded with
    cube starts from `distribution`. Returns the training workdir."""
    from act_jax import prepare_data, train
    from configs import tiny

    config = tiny.get_config()
    config.data.tfds_data_dir = str(root / "tfds")
    config.data.episodes_dir = str(root / "episodes")
    config.data.record_episodes = episodes
    config.data.record_locations = distribution
    config.data.val_fraction = 0.0
    config.train.num_steps = 2
    config.eval.rollout_every = 0
    prepare_data.record_missing_demos(config.data, config.model.image_size)
    train.train_and_evaluate(config, root / "run")
    return root / "run"


@contextlib.contextmanager
def fast_compiles(cache_dir: Path):
    """Cheaper XLA compiles for tests, restored afterwards.

    `jax_disable_most_optimizations` halves compile time (as flax's example tests do), and a
    persistent compilation cache lets the several short runs of one test (straight, interrupted,
    resumed) share their executables. Subprocesses pick the cache up from
    `JAX_COMPILATION_CACHE_DIR` (see `subprocess_env`).
    """
    from jax.experimental.compilation_cache import compilation_cache

    names = (
        "jax_disable_most_optimizations",
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    old = {n: jax.config.values[n] for n in names}
    jax.config.update("jax_disable_most_optimizations", True)
    jax.config.update("jax_compilation_cache_dir", os.fspath(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        for n, v in old.items():
            jax.config.update(n, v)
        compilation_cache.reset_cache()


def subprocess_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a child Python that shares the test's compile settings and cache."""
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
        JAX_COMPILATION_CACHE_DIR=os.fspath(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        PYTHONPATH=os.pathsep.join([os.fspath(root), os.environ.get("PYTHONPATH", "")]),
    )
    env.update(extra)
    return env
