"""Recording: durable, resumable, deterministic, and readable back through TFDS unchanged."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers_data import damage_episode

from act_jax_datasets.episodes import build, load
from hardware.record import main
from hardware.recording.episodes import list_episodes, read_episode
from hardware.recording.recorder import episode_seed, record_sim_dataset

ROOT = Path(__file__).resolve().parents[1]
SIZE = (24, 32)


def assert_same_episode(a, b):
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.timestamp, b.timestamp)
    assert a.png == b.png
    assert a.meta == b.meta


@pytest.fixture(scope="module")
def two_episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "eps"
    record_sim_dataset(out, 2, SIZE, seed=3, progress=False)
    return out


def test_episodes_hold_what_the_design_says(two_episodes):
    paths = list_episodes(two_episodes)
    assert [p.name for p in paths] == ["episode_000000.npz", "episode_000001.npz"]
    for i, p in enumerate(paths):
        ep = read_episode(p)
        t = len(ep)
        assert 135 <= t <= 180
        assert ep.state.shape == ep.action.shape == (t, 6)
        np.testing.assert_allclose(np.diff(ep.timestamp), 1 / 30)
        assert ep.frames("top").shape == (t, *SIZE, 3)
        m = ep.meta
        assert m.success and m.robot_type == "sim_so101" and m.fps == 30
        assert m.seed == episode_seed(3, i) and m.location_id == -1
        assert np.all(np.isfinite(m.cube_start_pose))
        # The servos are stiff: the measured state follows the commanded targets closely.
        lag = np.abs(ep.state[1:, :5] - ep.action[:-1, :5])
        assert np.median(lag) < 1.0


def test_two_episode_dataset_reads_back_identical(two_episodes, tmp_path):
    source = load(build(two_episodes, tmp_path / "tfds", "rec2"))
    assert len(source) == 2
    for i, path in enumerate(list_episodes(two_episodes)):
        ep, ex = read_episode(path), source[i]
        np.testing.assert_array_equal(ex["observation"]["state"], ep.state)
        np.testing.assert_array_equal(ex["action"], ep.action)
        np.testing.assert_array_equal(ex["timestamp"], ep.timestamp)
        for cam in ("top", "lateral"):
            np.testing.assert_array_equal(np.stack(ex["observation"][cam]), ep.frames(cam))
        md = ex["episode_metadata"]
        assert bool(md["success"]) == ep.meta.success
        assert int(md["location_id"]) == ep.meta.location_id
        np.testing.assert_allclose(md["cube_start_pose"], ep.meta.cube_start_pose, rtol=1e-6)


def test_same_seed_same_dataset_whether_resumed_or_not(two_episodes, tmp_path):
    resumed = tmp_path / "resumed"
    record_sim_dataset(resumed, 1, SIZE, seed=3, progress=False)
    record_sim_dataset(resumed, 2, SIZE, seed=3, progress=False)  # appends episode 1
    for a, b in zip(list_episodes(two_episodes), list_episodes(resumed), strict=True):
        assert_same_episode(read_episode(a), read_episode(b))


def test_resuming_with_other_settings_is_refused(two_episodes, tmp_path):
    with pytest.raises(ValueError, match="other settings.*image_size"):
        record_sim_dataset(two_episodes, 3, (32, 40), seed=3, progress=False)


def test_killing_the_recorder_mid_episode_keeps_earlier_episodes(tmp_path):
    out = tmp_path / "eps"
    cmd = [
        sys.executable,
        "-m",
        "hardware.record",
        "--episodes",
        "20",
        "--out",
        str(out),
        "--image-size",
        "24x32",
        "--seed",
        "3",
        "--no-progress",
    ]
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while len(list_episodes(out)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "recorder wrote no episodes in 60 s"
            time.sleep(0.05)
        time.sleep(0.15)  # somewhere inside a later episode
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = list_episodes(out)
    assert 2 <= len(kept) < 20
    for p in kept:
        read_episode(p)  # every listed episode is complete
    # The first ones are exactly what an uninterrupted recording with that seed holds.
    fresh = tmp_path / "fresh"
    record_sim_dataset(fresh, 1, SIZE, seed=3, progress=False)
    assert_same_episode(read_episode(kept[0]), read_episode(list_episodes(fresh)[0]))


@pytest.mark.parametrize(
    "index, how",
    [(1, "truncated"), (1, "empty"), (0, "bit_flipped")],
    ids=["last_truncated", "last_empty", "first_bit_flipped"],
)
def test_resuming_sets_a_damaged_episode_aside_and_records_it_again(
    two_episodes, tmp_path, index, how, capsys
):
    # The damaged file moves to damaged/ (named, kept as it was), its index is recorded again:
    # the same episode, as the sim is deterministic; the other episode is not touched.
    out = tmp_path / "eps"
    shutil.copytree(two_episodes, out)
    bad = out / f"episode_00000{index}.npz"
    other = out / f"episode_00000{1 - index}.npz"
    kept = other.read_bytes()
    damaged = damage_episode(bad, how)
    record_sim_dataset(out, 2, SIZE, seed=3, progress=False)
    err = capsys.readouterr().err
    assert f"record: {bad}: episode {index} is damaged: " in err
    assert f"moved to {out / 'damaged' / bad.name}; episode {index} is recorded again" in err
    assert (out / "damaged" / bad.name).read_bytes() == damaged
    assert [p.name for p in list_episodes(out)] == ["episode_000000.npz", "episode_000001.npz"]
    assert other.read_bytes() == kept
    assert_same_episode(read_episode(bad), read_episode(two_episodes / bad.name))


def test_resuming_fills_a_gap_left_by_a_deleted_episode(two_episodes, tmp_path):
    out = tmp_path / "eps"
    shutil.copytree(two_episodes, out)
    (out / "episode_000000.npz").unlink()
    record_sim_dataset(out, 2, SIZE, seed=3, progress=False)
    for a, b in zip(list_episodes(two_episodes), list_episodes(out), strict=True):
        assert a.name == b.name
        assert_same_episode(read_episode(a), read_episode(b))


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["--episodes", "1", "--image-size", "big"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--episodes", "1", "--robot", "koch"])
    assert "unknown --robot" in capsys.readouterr().err


def test_one_command_records_and_builds_the_dataset(tmp_path, capsys):
    main(
        [
            "--episodes",
            "1",
            "--out",
            str(tmp_path / "eps"),
            "--image-size",
            "24x32",
            "--locations",
            "named",
            "--build-tfds",
            str(tmp_path / "tfds"),
            "--name",
            "one",
            "--no-progress",
        ]
    )
    source = load(tmp_path / "tfds" / "act_episodes" / "one" / "1.1.0")
    assert len(source) == 1
    assert int(source[0]["episode_metadata"]["location_id"]) == 0  # named locations in order
    assert "built" in capsys.readouterr().out


def test_the_old_option_name_still_places_the_cube_and_says_so_once(tmp_path, capsys):
    out = tmp_path / "eps"
    common = ["--episodes", "1", "--out", str(out), "--image-size", "24x32", "--no-progress"]
    assert (
        main([*common, "--max-steps", "2", "--distribution", "named", "--distribution", "named"])
        == 0
    )
    err = capsys.readouterr().err
    assert err.count("--distribution is deprecated") == 1 and "use --locations" in err
    meta = read_episode(list_episodes(out)[0]).meta
    assert meta.location_id == 0 and meta.extra["recording"]["distribution"] == "named"
    # the same recording under the new name: its settings match, so it resumes
    assert main([*common[:1], "2", *common[2:], "--max-steps", "2", "--locations", "named"]) == 0
    assert read_episode(list_episodes(out)[1]).meta.location_id == 1
    assert "deprecated" not in capsys.readouterr().err


def test_resuming_with_another_expert_is_refused(two_episodes):
    from hardware.recording.recorder import record
    from hardware.sim import ScriptedExpert, SimRobot

    settings = {"image_size": list(SIZE), "distribution": "uniform", "teleop": "expert"}
    with SimRobot(image_size=SIZE, seed=3) as robot:
        expert = ScriptedExpert(robot, seed=3, clearance=0.0)
        with pytest.raises(ValueError, match="other settings.*teleop_settings"):
            record(robot, expert, two_episodes, 3, seed=3, settings=settings, progress=False)
    assert len(list_episodes(two_episodes)) == 2
