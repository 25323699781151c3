"""`python -m hardware.record --robot so101 --teleop leader`: a leader arm drives a follower and
the recorder stores both through the real servo stack (pyserial on a pty, protocol, buses,
calibrations, safety). Bad arguments fail before any port opens; an emulated recording (the
MuJoCo scene behind the follower's servo emulator, a scripted hand on the leader) gives real
pick-and-place demos that build into a dataset; the operator's prompt (Enter / r / q) works; Ctrl-C
mid-episode keeps earlier episodes and leaves the follower parked with torque off; a servo lost
mid-episode is a protective stop that discards only that episode; a second recorder on a busy
--out stops before any port opens."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_wire import assert_torque_off_last

from hardware.arms.safety import SafetyConfig
from hardware.emulation.emulated_arm import default_calibration, emulate_arm
from hardware.record import EXIT_OK, main
from hardware.recording.episodes import list_episodes, read_episode
from hardware.recording.folder_lock import LOCK_FILE, lock_folder
from hardware.recording.recorder import episode_seed

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calibrations(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    return {
        "so101": default_calibration("so101").save(d / "so101.json"),
        "so101_leader": default_calibration("so101").save(d / "so101_leader.json"),
        "koch_leader": default_calibration("koch_leader").save(d / "koch_leader.json"),
    }


@pytest.fixture
def arms():
    """A follower and a leader on two emulated buses (first-order servos)."""
    with emulate_arm("so101").start() as follower, emulate_arm("so101").start() as leader:
        yield follower, leader


def real_argv(arms, calibrations, out, *extra):
    follower, leader = arms
    return [
        "--robot",
        "so101",
        "--teleop",
        "leader",
        "--episodes",
        "1",
        "--out",
        str(out),
        "--port",
        follower.port,
        "--leader-port",
        leader.port,
        "--calibration",
        str(calibrations["so101"]),
        "--leader-calibration",
        str(calibrations["so101_leader"]),
        "--cameras",
        "top=0,lateral=2",
        *extra,
    ]


# -- (a) argument errors, before any port opens -----------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"--calibration": "/nonexistent/so101.json"},
            "--calibration: no calibration at /nonexistent/so101.json",
        ),
        ({"--robot": "koch"}, "--calibration {so101} is for a 'so101' arm, not 'koch'"),
        (
            {"--leader-calibration": "{koch_leader}"},
            "--leader-calibration {koch_leader} is for a 'koch_leader' arm, not 'so101'",
        ),
        (
            {"--leader-calibration": "{so101}"},
            "--calibration and --leader-calibration are the same",
        ),
        ({"--cameras": "top=0,lateral"}, "--cameras: camera spec item 'lateral'"),
        ({"--leader-port": None}, "--leader-port required to record with a leader arm"),
        ({"--leader-port": "{port}"}, "--port and --leader-port are both"),
        ({"--reset-time": "-1"}, "argument --reset-time: must be a number >= 0, got -1"),
        ({"--robot": "sim"}, "--teleop leader drives a servo arm"),
        ({"--teleop": "expert", "--robot": "sim"}, "--port is for a servo arm"),
        ({"--emulate": ""}, "--port is not used with --emulate"),
    ],
)
def test_bad_arguments_fail_before_any_port_opens(
    arms, calibrations, tmp_path, change, message, capsys
):
    argv = real_argv(arms, calibrations, tmp_path / "eps")
    fill = {k: str(v) for k, v in calibrations.items()} | {"port": arms[0].port}
    for flag, value in change.items():
        if flag in argv:
            k = argv.index(flag)
            del argv[k : k + 2]
        if value is not None:
            argv += [flag] + ([value.format(**fill)] if value else [])
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message.format(**fill) in capsys.readouterr().err
    assert arms[0].wire_log == [] and arms[1].wire_log == []  # not one byte reached a servo
    assert not (tmp_path / "eps").exists()


def test_a_second_recorder_on_a_busy_out_names_the_first_and_opens_nothing(
    arms, calibrations, tmp_path
):
    # This process holds --out, as a first recorder would; the second is the real command.
    out = tmp_path / "eps"
    with lock_folder(out, "recording 50 episodes"):
        done = subprocess.run(
            [sys.executable, "-m", "hardware.record", *real_argv(arms, calibrations, out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"record: --out {out} is in use: pid {os.getpid()} (recording 50 episodes); wait for it "
        "to finish, or use another folder"
    ]
    assert arms[0].wire_log == [] and arms[1].wire_log == []  # not one byte reached a servo
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]


# -- (b) an emulated leader -> follower recording -----------------------------------------------
@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "eps"
    t0 = time.perf_counter()
    code = main(
        [
            "--robot",
            "so101",
            "--teleop",
            "leader",
            "--emulate",
            "--episodes",
            "2",
            "--out",
            str(out),
            "--image-size",
            "48x64",
            "--seed",
            "5",
        ]
    )
    assert code == EXIT_OK
    return out, time.perf_counter() - t0


def test_emulated_teleop_records_pick_and_place_demos(emulated):
    from hardware.sim import ScriptedExpert, SimRobot

    out, _ = emulated
    paths = list_episodes(out)
    assert [p.name for p in paths] == ["episode_000000.npz", "episode_000001.npz"]
    calib = default_calibration("so101")
    lo, hi = calib.limits()
    margin = SafetyConfig().margin
    with SimRobot(image_size=(48, 64), cameras=()) as sim:
        for i, path in enumerate(paths):
            ep = read_episode(path)
            m = ep.meta
            assert m.robot_type == "so101" and m.seed == episode_seed(5, i) and m.fps == 30
            assert m.success and m.extra["success_by"] == "sim check"  # the cube is in the box
            assert m.extra["recording"]["emulated"] and m.extra["recording"]["leader"] == "so101"
            # The action is the leader's pose: the hand's plan as the leader's encoders read it
            # (0.09 deg a tick), through the follower's guard (ranges less the margin).
            sim.reset(seed=m.seed)
            expert = ScriptedExpert(sim, seed=5)
            expert.reset()
            plan = np.clip(expert.plan.actions, lo + margin, hi - margin)
            assert len(ep) == len(plan)
            err = np.abs(ep.action - plan)
            assert np.median(err) < 0.1 and np.percentile(err, 95) < 0.5, err.max(0)
            # The state is the follower's encoders: it tracks the leader a tick behind.
            lag = np.abs(ep.state[1:, :5] - ep.action[:-1, :5])
            assert np.median(lag) < 1.0
            assert np.ptp(ep.state[:, 0]) > 20  # it really moved to the cube and to the box
            np.testing.assert_allclose(np.diff(ep.timestamp), 1 / 30)  # emulated time
            for cam in ("top", "lateral"):
                frames = ep.frames(cam)
                assert frames.shape == (len(ep), 48, 64, 3)
                assert np.abs(frames[0].astype(int) - frames[len(ep) // 2]).mean() > 1.0


def test_emulated_recording_builds_and_loads_for_training(emulated, tmp_path):
    from act_jax.data import load_episodes
    from act_jax_datasets.episodes import build

    out, _ = emulated
    dataset = build(out, tmp_path / "tfds", "teleop2")
    episodes = load_episodes(dataset, ["top", "lateral"], (48, 64), 6, 6)
    assert len(episodes) == 2
    for data, path in zip(episodes, list_episodes(out), strict=True):
        ep = read_episode(path)
        np.testing.assert_array_equal(np.asarray(data.state), ep.state)
        np.testing.assert_array_equal(np.asarray(data.action), ep.action)


def test_the_same_command_resumes_after_the_last_episode(emulated, tmp_path):
    out = tmp_path / "eps"
    shutil.copytree(emulated[0], out)
    argv = ["--robot", "so101", "--teleop", "leader", "--emulate", "--out", str(out), "--seed", "5"]
    assert main(argv + ["--episodes", "3", "--image-size", "48x64"]) == EXIT_OK
    names = [p.name for p in list_episodes(out)]
    assert names == [f"episode_00000{i}.npz" for i in range(3)]
    assert read_episode(list_episodes(out)[2]).meta.seed == episode_seed(5, 2)
    with pytest.raises(ValueError, match="other settings.*image_size"):
        main(argv + ["--episodes", "4", "--image-size", "32x40"])


# -- (c) the real-arm path: cameras from video files, the arms on emulated buses ----------------
def write_video(path, frames=20):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for k in range(frames):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[10:30, 3 * k : 3 * k + 12] = 220
        writer.write(frame)
    writer.release()
    return path


def run_cli(argv, **kw):
    # SIGINT back to its default: a shell without job control starts background jobs (and so
    # a backgrounded pytest's children) with Ctrl-C ignored.
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "hardware.record", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kw,
    )


def test_prompt_records_rerecords_and_stops(arms, calibrations, tmp_path):
    videos = f"top={write_video(tmp_path / 't.mp4')},lateral={write_video(tmp_path / 'l.mp4')}"
    argv = real_argv(
        arms,
        calibrations,
        tmp_path / "eps",
        "--cameras",
        videos,
        "--max-steps",
        "6",
        "--episodes",
        "3",
    )
    proc = run_cli(argv, stdin=subprocess.PIPE)
    # Enter: episode 0; r: episode 0 again; q: stop.
    out, err = proc.communicate("\nr\nq\n", timeout=90)
    assert proc.returncode == EXIT_OK, err[-2000:]
    assert "episode 0 deleted: recording it again" in out
    assert out.count("recording episode 0") == 2 and "recording episode 1" not in out
    (path,) = list_episodes(tmp_path / "eps")
    ep = read_episode(path)
    assert len(ep) == 6 and ep.frames("top").shape == (6, 48, 64, 3)
    assert ep.meta.success and ep.meta.extra["success_by"].startswith("operator")
    assert ep.timestamp[-1] > 0.1  # wall-clock timestamps at 30 fps
    assert_torque_off_last(arms[0])
    assert [v for _, _, v in arms[1].writes("Torque_Enable") if v] == []  # leader stays limp


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_stop_signal_mid_episode_keeps_earlier_episodes_and_parks(
    sig, arms, calibrations, tmp_path
):
    follower, leader = arms
    videos = f"top={write_video(tmp_path / 't.mp4')},lateral={write_video(tmp_path / 'l.mp4')}"
    out = tmp_path / "eps"
    argv = real_argv(
        arms,
        calibrations,
        out,
        "--cameras",
        videos,
        "--max-steps",
        "60",
        "--episodes",
        "5",
        "--reset-time",
        "0",
    )
    calib = default_calibration("so101")
    start = calib.to_units(np.array([follower.get(i, "Present_Position") for i in range(1, 7)]))
    proc = run_cli(argv)
    try:
        # A person moves the leader: pan and elbow by 20 degrees; the follower follows.
        moved = calib.to_ticks(start + np.array([20, 0, -20, 0, 0, 0]))
        for i in (0, 2):
            leader.move_by_hand(i + 1, int(moved[i]))
        for line in proc.stdout:
            if line.startswith("recording episode 1"):
                break
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    name = "interrupt" if sig == signal.SIGINT else sig.name
    assert f"stopped by {name}: the episode in progress (if any) was discarded" in err
    assert "parked with torque off" in err
    assert [p.name for p in list_episodes(out)] == ["episode_000000.npz"]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "episode_000000.npz"]  # no partial
    ep = read_episode(list_episodes(out)[0])
    assert len(ep) == 60
    np.testing.assert_allclose(ep.action[-1, [0, 2]], start[[0, 2]] + [20, -20], atol=0.2)
    # The wire log: the follower went where the leader was, was parked back at the pose it
    # started from, then every servo got torque off, after the last goal.
    goals = {}
    for _, motor_id, value in follower.writes("Goal_Position"):
        goals[motor_id] = value
    parked = calib.to_units(np.array([goals[i] for i in range(1, 7)]))
    lo, hi = calib.limits()
    m = SafetyConfig().margin
    np.testing.assert_allclose(parked, np.clip(start, lo + m, hi - m), atol=0.2)
    assert_torque_off_last(follower)


def test_a_lost_servo_mid_episode_is_a_protective_stop(arms, calibrations, tmp_path):
    # Servo 3's cable comes off during episode 1: the follower stops with torque off, the
    # recorder discards that episode; episode 0 stays. Servo 3 cannot read back its torque off,
    # so the last line names it instead of saying torque is off, and the status is 4, not 3.
    follower, _ = arms
    videos = f"top={write_video(tmp_path / 't.mp4')},lateral={write_video(tmp_path / 'l.mp4')}"
    out = tmp_path / "eps"
    argv = real_argv(
        arms,
        calibrations,
        out,
        "--cameras",
        videos,
        "--max-steps",
        "60",
        "--episodes",
        "3",
        "--reset-time",
        "0",
    )
    proc = run_cli(argv)
    try:
        for line in proc.stdout:
            if line.startswith("recording episode 1"):
                break
        follower.faults.dead_ids = {3}
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 4, err[-2000:]
    assert "PROTECTIVE STOP: no position from elbow_flex (id 3) for 3 ticks" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("record: TORQUE OFF NOT CONFIRMED by elbow_flex (id 3): "), err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "episode_000000.npz"]
    assert [follower.get(i, "Torque_Enable") for i in (1, 2, 4, 5, 6)] == [0] * 5
