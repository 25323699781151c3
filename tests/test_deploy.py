"""`python -m hardware.deploy`: a tiny trained checkpoint drives the emulated arm (real pyserial
on a pty, protocol, bus, calibration, safety) in the MuJoCo scene; bad arguments fail before any
port opens; a NaN policy ends in a protective stop, a camera gone stale in park and torque off.
The cameras on their own are `tests/test_cameras.py`."""

import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers_cameras import write_test_video
from helpers_data import build_dataset, subprocess_env
from helpers_wire import assert_torque_off_last

from act_jax import train
from act_jax.policy import Policy
from configs import tiny
from hardware import deploy
from hardware.arms.safety import SafetyConfig
from hardware.cameras import OpenCVCamera
from hardware.emulation.emulated_arm import default_calibration, emulate_arm
from hardware.sim.robot import HOME

ROOT = Path(__file__).resolve().parents[1]


# conftest: cheaper compiles
pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("fast_jax")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    dataset = build_dataset(tmp_path_factory.mktemp("data"), num_episodes=2, steps=10)
    config = tiny.get_config()
    config.data.dataset_dir = str(dataset)
    config.train.num_steps = 2
    config.train.checkpoint_every = 2
    config.eval.max_steps = 6
    workdir = tmp_path_factory.mktemp("tiny_run")
    train.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def policy(checkpoint):
    p = Policy.from_checkpoint(checkpoint)
    p.warmup()
    return p


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    return default_calibration("so101").save(tmp_path_factory.mktemp("calib") / "so101.json")


def home_inside_limits(calib):
    """HOME as the safety guard holds it: kept `margin` inside the calibrated ranges (the sim's
    HOME shoulder_lift, -100 deg, lies at the edge of the default calibration's range)."""
    lo, hi = calib.limits()
    margin = SafetyConfig().margin
    return np.clip(HOME, lo + margin, hi - margin)


def goal_units(emu, calib):
    """Goal_Position sync writes as (n, 6) LeRobot units, in wire order."""
    rows, row = [], {}
    ids = [j.id for j in calib.joints.values()]
    for _, motor_id, value in emu.writes("Goal_Position"):
        row[motor_id] = value
        if len(row) == 6:
            rows.append(calib.to_units(np.array([row[i] for i in ids])))
            row = {}
    return np.array(rows)


# -- (a) validation before any port opens -----------------------------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cameras", "top=0,side=2"], "do not match the cameras checkpoint"),
        (["--cameras", "top=0,lateral"], "expected NAME=SOURCE"),
        (["--cameras", "top=0,lateral=1", "--execution", "ensemble:fast"], "--execution: bad"),
        (
            ["--cameras", "top=0,lateral=1", "--calibration", "/nonexistent/so101.json"],
            "no calibration at /nonexistent/so101.json",
        ),
        (["--cameras", "top=0,lateral=1", "--robot", "koch"], "is for a 'so101' arm, not 'koch'"),
        (
            ["--cameras", "top=0,lateral=1", "--camera-size", "480by640"],
            "--camera-size: image size '480by640': expected HxW",
        ),
        (
            ["--cameras", "top=0,lateral=1", "--checkpoint", "/nonexistent/run"],
            "--checkpoint /nonexistent/run: no such directory",
        ),
    ],
)
def test_bad_arguments_fail_before_the_port_opens(
    checkpoint, calibration_file, extra, message, capsys
):
    with emulate_arm("so101").start() as emu:
        argv = [
            "--checkpoint",
            str(checkpoint),
            "--robot",
            "so101",
            "--port",
            emu.port,
            "--calibration",
            str(calibration_file),
        ]
        assert deploy.main(argv + extra) == deploy.EXIT_USAGE
        assert emu.wire_log == []  # not one byte reached the servos
    assert message in capsys.readouterr().err


def test_camera_names_that_do_not_match_exit_2_before_compiling(
    checkpoint, calibration_file, tmp_path_factory
):
    # In its own process: the status and stderr a person sees; nothing compiled, no port opened.
    env = subprocess_env(tmp_path_factory.getbasetemp() / "jax_cache")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hardware.deploy",
            "--checkpoint",
            str(checkpoint),
            "--robot",
            "so101",
            "--port",
            "/dev/nonexistent/ttyACM9",
            "--calibration",
            str(calibration_file),
            "--cameras",
            "top=0,side=2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == deploy.EXIT_USAGE, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"deploy: error: --cameras names ['side', 'top'] do not match the cameras checkpoint "
        f"{checkpoint} was trained with: ['top', 'lateral']"
    ]
    assert "compiled" not in done.stdout


def test_real_arm_path_with_replay_cameras(checkpoint, calibration_file, tmp_path, capsys):
    # The non-emulated path end to end: cameras opened from video files (a real USB camera cannot
    # run here), the arm on the servo emulator's pty (first-order servos), 10 ticks in real time.
    top, lateral = write_test_video(tmp_path / "top.mp4"), write_test_video(tmp_path / "lat.mp4")
    with emulate_arm("so101").start() as emu:
        argv = [
            "--checkpoint",
            str(checkpoint),
            "--robot",
            "so101",
            "--port",
            emu.port,
            "--calibration",
            str(calibration_file),
            "--cameras",
            f"top={top},lateral={lateral}",
            "--max-steps",
            "10",
        ]
        assert deploy.main(argv) == deploy.EXIT_OK, capsys.readouterr().err
        assert len(emu.writes("Goal_Position")) >= 6 * 11  # goal := present, then 10 ticks
        assert [v for *_, v in emu.writes("Torque_Enable")][-6:] == [0] * 6
    assert "10 ticks" in capsys.readouterr().out


def test_unopenable_camera_is_named_and_the_port_stays_closed(checkpoint, calibration_file, capsys):
    with emulate_arm("so101").start() as emu:
        argv = [
            "--checkpoint",
            str(checkpoint),
            "--robot",
            "so101",
            "--port",
            emu.port,
            "--calibration",
            str(calibration_file),
            "--cameras",
            "top=/dev/video97,lateral=1",
        ]
        assert deploy.main(argv) == 1
        assert emu.wire_log == []
    assert "camera 'top' (device '/dev/video97'): cannot open" in capsys.readouterr().err


def test_emulate_refuses_real_hardware_flags(checkpoint, capsys):
    argv = ["--checkpoint", str(checkpoint), "--robot", "so101", "--emulate", "--port", "/dev/x"]
    assert deploy.main(argv) == deploy.EXIT_USAGE
    assert "--port is not used with --emulate" in capsys.readouterr().err


# -- (b) the policy drives the emulated arm through the wire ----------------------------------
def test_emulated_deploy_sends_goals_then_parks_and_torques_off(checkpoint, capsys):
    argv = [
        "--checkpoint",
        str(checkpoint),
        "--robot",
        "so101",
        "--emulate",
        "--max-steps",
        "8",
        "--episodes",
        "2",
        "--seed",
        "3",
    ]
    assert deploy.main(argv) == deploy.EXIT_OK
    out = capsys.readouterr().out
    assert "episode 0: seed 3" in out and "episode 1: seed 4" in out
    assert "success 0/2 (sim success check)" in out  # 8 ticks: the cube cannot be in the box
    assert "policy retraces after warmup: 0" in out
    assert "clock: virtual" in out and "tick p50" in out


def test_wire_log_of_an_emulated_episode(policy):
    calib = default_calibration("so101")
    box = {}
    episodes = deploy.deploy_emulated(
        policy, calibration=calib, max_steps=6, on_emulator=lambda emu: box.setdefault("emu", emu)
    )
    emu = box["emu"]
    (ep,) = episodes
    assert ep.stop_reason is None and ep.stats.ticks == 6
    goals = goal_units(emu, calib)
    # connect writes goal := present (HOME), then one goal per tick, then the park moves.
    assert len(goals) >= 1 + 6
    np.testing.assert_allclose(goals[0], HOME, atol=0.2)
    moved = goals[1:7]
    assert np.ptp(moved, axis=0).max() > 0.05  # the policy's actions, not a held pose
    np.testing.assert_allclose(goals[-1], home_inside_limits(calib), atol=0.2)  # parked at start
    assert_torque_off_last(emu)


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_stop_signal_parks_and_turns_torque_off(sig, checkpoint, tmp_path_factory):
    # A real signal to the CLI once torque is on: it parks, turns torque off on every servo
    # (read back from the emulator) and exits with 128 + the signal, as a shell reports it.
    env = subprocess_env(tmp_path_factory.getbasetemp() / "jax_cache")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "hardware.deploy",
            "--checkpoint",
            str(checkpoint),
            "--robot",
            "so101",
            "--emulate",
            "--max-steps",
            "100000",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored; undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in proc.stderr:  # torque is on from this line until the arm is made safe
            if line.startswith("arm connected, torque on"):
                break
        else:
            raise AssertionError(f"deploy never connected: {proc.communicate()}")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    name = "interrupt" if sig == signal.SIGINT else sig.name
    # (The signal may land before the loop's first tick, while the arm moves to its start pose:
    # then the loop never reports it, and the arm is made safe all the same.)
    assert f"stopped by {name}: the arm was left parked with torque off" in err
    assert "emulated servos at exit: torque on 0/6" in err


# -- (c) a NaN policy: protective stop, nothing non-finite on the wire --------------------------
@pytest.fixture(scope="module")
def nan_policy(policy):
    variables = jax.tree.map(lambda x: x * np.nan, policy.variables)
    p = Policy(policy.model, variables, policy.config, policy.norm_stats)
    p.warmup()
    return p


def test_nan_policy_stops_the_arm_and_exits_non_zero(checkpoint, nan_policy, monkeypatch, capsys):
    box = {}
    real = deploy.deploy_emulated

    def keep_emulator(policy, **kw):
        return real(policy, **kw, on_emulator=lambda e: box.setdefault("emu", e))

    monkeypatch.setattr(deploy, "load_policy", lambda *a: nan_policy)
    monkeypatch.setattr(
        deploy, "deploy_emulated", lambda policy, on_emulator, **kw: keep_emulator(policy, **kw)
    )
    argv = ["--checkpoint", str(checkpoint), "--robot", "so101", "--emulate", "--max-steps", "20"]
    assert deploy.main(argv) == deploy.EXIT_STOP
    err = capsys.readouterr().err
    assert "PROTECTIVE STOP: 3 bad actions in a row (last: non-finite values" in err
    calib = default_calibration("so101")
    goals = goal_units(box["emu"], calib)
    lo, hi = calib.limits()
    assert np.isfinite(goals).all() and (goals >= lo - 1).all() and (goals <= hi + 1).all()
    held = np.broadcast_to(home_inside_limits(calib), goals[1:].shape)
    np.testing.assert_allclose(goals[1:], held, atol=0.5)  # the last safe pose, held
    assert_torque_off_last(box["emu"])


def test_unconfirmed_torque_off_is_named_and_never_claimed(checkpoint, policy, monkeypatch, capsys):
    # Once torque is on, every servo reply comes 2 s late: the servos stop answering in time,
    # a protective stop follows, and torque off cannot be read back. deploy names each servo,
    # never says the torque is off, and exits 4 (the emulator shows why: torque still on).
    from hardware.arms import ServoArm

    box = {}
    real_emulated, real_connect = deploy.deploy_emulated, ServoArm.connect

    def late_after_connect(arm):
        real_connect(arm)
        box["emu"].faults.delay, box["emu"].faults.delay_s = 1.0, 2.0

    monkeypatch.setattr(deploy, "load_policy", lambda *a: policy)
    monkeypatch.setattr(
        deploy,
        "deploy_emulated",
        lambda policy, on_emulator, **kw: real_emulated(
            policy, **kw, on_emulator=lambda e: box.setdefault("emu", e)
        ),
    )
    monkeypatch.setattr(ServoArm, "connect", late_after_connect)
    argv = ["--checkpoint", str(checkpoint), "--robot", "so101", "--emulate", "--max-steps", "20"]
    assert deploy.main(argv) == deploy.EXIT_TORQUE
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("deploy: PROTECTIVE STOP: no position from"), err
    named = ", ".join(
        f"{n} (id {i})"
        for i, n in enumerate(
            ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"],
            1,
        )
    )
    assert f"TORQUE OFF NOT CONFIRMED by {named}:" in last
    assert "torque is off" not in err and "read back from every servo" not in err
    assert "emulated servos at exit: torque on 6/6" in err


# -- (d) cameras ------------------------------------------------------------------------------
def test_a_camera_that_goes_stale_mid_run_parks_and_turns_torque_off(
    checkpoint, calibration_file, tmp_path, monkeypatch, capsys
):
    # The real-arm path (replay cameras, the arm on the emulator's pty): the lateral camera's
    # file ends after 10 frames and is not looped, so its capture stops mid-run, as an unplugged
    # camera's does, and its frame goes stale. The run ends there, whenever that is: the arm
    # parks, torque goes off on every servo, and the exit status is 1 with the camera named.
    from hardware.cameras import opencv

    top, lateral = write_test_video(tmp_path / "top.mp4"), write_test_video(tmp_path / "lat.mp4")

    def camera(source, *args, **kwargs):  # what open_cameras makes: only lateral stops
        return OpenCVCamera(source, *args, loop=source != str(lateral), **kwargs)

    monkeypatch.setattr(opencv, "OpenCVCamera", camera)
    calib = default_calibration("so101")
    with emulate_arm("so101").start() as emu:
        argv = [
            "--checkpoint",
            str(checkpoint),
            "--robot",
            "so101",
            "--port",
            emu.port,
            "--calibration",
            str(calibration_file),
            "--cameras",
            f"top={top},lateral={lateral}",
            "--max-steps",
            "100000",  # only the stale camera ends this run
        ]
        status = deploy.main(argv)
        err = capsys.readouterr().err
        assert status == 1, err
        assert [v for *_, v in emu.writes("Torque_Enable")][-6:] == [0] * 6
        assert all(emu.get(i, "Torque_Enable") == 0 for i in range(1, 7))
        goals = goal_units(emu, calib)
        lo, hi = calib.limits()
        start = np.clip(goals[0], lo + SafetyConfig().margin, hi - SafetyConfig().margin)
        assert len(goals) > 2  # goal := present, the policy's goals, then the park's
        np.testing.assert_allclose(goals[-1], start, atol=0.2)  # parked where it started
    line = err.strip().splitlines()[-1]
    assert "camera 'lateral'" in line and "ms old" in line and "the capture stopped" in line
    assert "parked, torque off (read back from every servo)" in line
