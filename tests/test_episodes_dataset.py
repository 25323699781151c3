"""Episode files and the TFDS builder: what is recorded is what is read back."""

import re

import numpy as np
import pytest
from helpers_data import DAMAGE, damage_episode

from act_jax_datasets.episodes import build, load
from act_jax_datasets.episodes.__main__ import main as build_main
from hardware.recording.episodes import (
    EpisodeDamaged,
    EpisodeMeta,
    check_archive,
    encode_png,
    list_episodes,
    next_episode_index,
    read_episode,
    write_episode,
)


def _fake_episode(rng, index, t=5, h=12, w=16):
    frames = {
        c: [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(t)]
        for c in ("top", "lateral")
    }
    return dict(
        state=rng.normal(size=(t, 6)).astype(np.float32),
        action=rng.normal(size=(t, 6)).astype(np.float32),
        timestamp=np.arange(t) / 30.0,
        png={c: [encode_png(f) for f in fs] for c, fs in frames.items()},
        meta=EpisodeMeta(
            episode_index=index,
            robot_type="test",
            success=bool(index % 2),
            cube_start_pose=(0.1, 0.2, 0.0125, 1, 0, 0, 0),
            seed=index,
        ),
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


# -- damaged episode files ---------------------------------------------------------------------
PROBLEM = {
    "truncated": "not a complete .npz archive, truncated?",
    "bit_flipped": "corrupt data, a checksum does not match",
    "empty": "the file is empty (0 bytes)",
}


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_episode_file_is_named(tmp_path, how):
    write_episode(tmp_path, **_fake_episode(np.random.default_rng(0), 3)[0])
    path = tmp_path / "episode_000003.npz"
    damage_episode(path, how)
    with pytest.raises(EpisodeDamaged) as e:
        read_episode(path)
    assert (e.value.path, e.value.index) == (path, 3)
    assert str(e.value) == f"{path}: episode 3 is damaged: {e.value.problem}"
    assert e.value.problem.startswith(PROBLEM[how])
    if how == "bit_flipped":
        check_archive(path)  # the cheap check sees a complete archive: only a full read tells
    else:
        with pytest.raises(EpisodeDamaged, match=re.escape(PROBLEM[how])):
            check_archive(path)


def _four_episodes(directory):
    rng = np.random.default_rng(4)
    recorded = [_fake_episode(rng, i)[0] for i in range(4)]
    for ep in recorded:
        write_episode(directory, **ep)
    return recorded


@pytest.mark.parametrize("how", ["truncated", "bit_flipped"])
def test_the_builder_refuses_a_damaged_episode_and_builds_nothing(tmp_path, how, capsys):
    _four_episodes(tmp_path / "eps")
    intact = {p: p.read_bytes() for p in list_episodes(tmp_path / "eps")}
    bad = tmp_path / "eps" / "episode_000002.npz"
    intact[bad] = damage_episode(bad, how)
    with pytest.raises(
        EpisodeDamaged,
        match=rf"{bad}: episode 2 is damaged: .*No dataset was "
        r"built; to build one without it: python -m act_jax_datasets.episodes "
        rf"--episodes {tmp_path / 'eps'} .* --skip-damaged",
    ):
        build(tmp_path / "eps", tmp_path / "tfds", "refused")
    assert list((tmp_path / "tfds").rglob("dataset_info.json")) == []
    # The command line says the same in one line (after TFDS's progress bars), exit status 1.
    argv = [
        "--episodes",
        str(tmp_path / "eps"),
        "--data-dir",
        str(tmp_path / "tfds"),
        "--name",
        "refused",
    ]
    assert build_main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"act_jax_datasets.episodes: error: {bad}: episode 2")
    assert {p: p.read_bytes() for p in list_episodes(tmp_path / "eps")} == intact  # untouched


def test_the_builder_skips_damaged_episodes_when_asked_and_names_them(tmp_path, capsys):
    recorded = _four_episodes(tmp_path / "eps")
    first, third = (tmp_path / "eps" / f"episode_00000{i}.npz" for i in (0, 2))
    damage_episode(first, "truncated")  # the first episode also gives the dataset's features
    damage_episode(third, "bit_flipped")
    argv = [
        "--episodes",
        str(tmp_path / "eps"),
        "--data-dir",
        str(tmp_path / "tfds"),
        "--name",
        "skipped",
        "--skip-damaged",
    ]
    assert build_main(argv) == 0
    err = capsys.readouterr().err
    assert f"skipping {first}: episode 0 is damaged: not a complete .npz archive" in err
    assert f"skipping {third}: episode 2 is damaged: corrupt data" in err
    source = load(tmp_path / "tfds" / "act_episodes" / "skipped" / "1.1.0")
    assert [int(source[i]["episode_metadata"]["episode_index"]) for i in range(2)] == [1, 3]
    for i, k in enumerate((1, 3)):
        np.testing.assert_array_equal(source[i]["observation"]["state"], recorded[k]["state"])
