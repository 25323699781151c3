"""Episode files and the TFDS builder: what is recorded is what is read back."""

import numpy as np
import pytest

from act_jax_datasets.episodes import build, load
from hardware.recording.episodes import (
    EpisodeMeta,
    encode_png,
    list_episodes,
    next_episode_index,
    read_episode,
    write_episode,
)


def _fake_episode(rng, index, t=5, h=12, w=16):
    frames = {c: [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(t)]
              for c in ("top", "lateral")}
    return dict(
        state=rng.normal(size=(t, 6)).astype(np.float32),
        action=rng.normal(size=(t, 6)).astype(np.float32),
        timestamp=np.arange(t) / 30.0,
        png={c: [encode_png(f) for f in fs] for c, fs in frames.items()},
        meta=EpisodeMeta(episode_index=index, robot_type="test", success=bool(index % 2),
                         cube_start_pose=(0.1, 0.2, 0.0125, 1, 0, 0, 0), seed=index),
    ), frames


def test_episode_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ep, frames = _fake_episode(rng, 3)
    write_episode(tmp_path, **ep)
    got = read_episode(tmp_path / "episode_000003.npz")
    np.testing.assert_array_equal(got.state, ep["state"])
    np.testing.assert_array_equal(got.frames("top"), np.stack(frames["top"]))
    assert got.meta == ep["meta"]
    assert next_episode_index(tmp_path) == 4


def test_stale_temporary_file_is_ignored(tmp_path):
    rng = np.random.default_rng(0)
    write_episode(tmp_path, **_fake_episode(rng, 0)[0])
    (tmp_path / ".episode_000001.npz.tmp-123").write_bytes(b"half written")
    assert [p.name for p in list_episodes(tmp_path)] == ["episode_000000.npz"]


def test_inconsistent_episode_names_the_field(tmp_path):
    ep, _ = _fake_episode(np.random.default_rng(0), 0)
    ep["action"] = ep["action"][:-1]
    with pytest.raises(ValueError, match="action"):
        write_episode(tmp_path, **ep)


def test_tfds_build_reads_back_identical(tmp_path):
    rng = np.random.default_rng(1)
    recorded = [_fake_episode(rng, i) for i in range(2)]
    for ep, _ in recorded:
        write_episode(tmp_path / "eps", **ep)
    source = load(build(tmp_path / "eps", tmp_path / "tfds", "tiny"))
    assert len(source) == 2
    for i, (ep, frames) in enumerate(recorded):
        ex = source[i]
        assert ex["episode_metadata"]["episode_index"] == i
        np.testing.assert_array_equal(ex["observation"]["state"], ep["state"])
        np.testing.assert_array_equal(ex["action"], ep["action"])
        for cam in ("top", "lateral"):
            np.testing.assert_array_equal(np.stack(ex["observation"][cam]), np.stack(frames[cam]))


def test_build_from_empty_directory_is_a_clear_error(tmp_path):
    (tmp_path / "eps").mkdir()
    with pytest.raises(FileNotFoundError, match="no episode files"):
        build(tmp_path / "eps", tmp_path / "tfds")


def test_load_missing_dataset_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load(tmp_path / "nope")


def test_example_i_is_episode_i(tmp_path):
    # Twelve episodes: with TFDS's hashed-key order the chance of the identity is 1 / 12!.
    rng = np.random.default_rng(2)
    for i in range(12):
        write_episode(tmp_path / "eps", **_fake_episode(rng, i, t=2, h=4, w=4)[0])
    source = load(build(tmp_path / "eps", tmp_path / "tfds", "order"))
    assert [int(source[i]["episode_metadata"]["episode_index"]) for i in range(12)] == list(
        range(12)
    )
