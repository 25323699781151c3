"""Calibration: units, atomic files, homing vs the encoder wrap, EEPROM checks, the CLI."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.arms import ServoArm, get_profile
from hardware.arms.calibration import (
    ArmCalibration,
    CalibrationError,
    JointCalibration,
    check_range,
    half_turn_offset,
)
from hardware.arms.calibration_procedure import calibrate
from hardware.calibrate import main
from hardware.conventions import JOINT_NAMES
from hardware.emulation.emulated_arm import default_calibration, emulate_arm
from hardware.emulation.emulator import EMULATED_BUS_OPTIONS
from hardware.emulation.scripted_user import ScriptedUser
from hardware.motors.bus import MotorBus

pytestmark = pytest.mark.timeout(120)


def calib_with(**changes):
    joints = {n: JointCalibration(i + 1, 0, 0, 1000, 3000) for i, n in enumerate(JOINT_NAMES)}
    for name, kw in changes.items():
        joints[name] = dataclasses.replace(joints[name], **kw)
    return ArmCalibration("so101", joints)


def test_units_follow_lerobot_formulas():
    c = calib_with(gripper={"range_min": 2000, "range_max": 3000}, wrist_flex={"drive_mode": 1})
    ticks = np.array([2000, 3000, 1000, 2500, 2000, 2250])
    u = c.to_units(ticks)
    k = 360 / 4095
    np.testing.assert_allclose(u[:5], [0, 1000 * k, -1000 * k, -500 * k, 0])
    assert u[5] == pytest.approx(25.0)
    np.testing.assert_array_equal(c.to_ticks(u), ticks)
    lo, hi = c.limits()
    assert lo[5] == 0 and hi[5] == 100 and lo[0] == pytest.approx(-1000 * k)


@given(st.lists(st.integers(1000, 3000), min_size=6, max_size=6), st.integers(0, 1))
@settings(max_examples=100, deadline=None)
def test_ticks_units_roundtrip(ticks, drive):
    c = calib_with(elbow_flex={"drive_mode": drive}, gripper={"drive_mode": drive})
    np.testing.assert_array_equal(c.to_ticks(c.to_units(ticks)), ticks)


def test_to_ticks_clips_and_refuses_nan():
    c = calib_with()
    assert list(c.to_ticks(np.array([1e6, -1e6, 0, 0, 0, 500.0]))[[0, 1, 5]]) == [3000, 1000, 3000]
    with pytest.raises(CalibrationError, match="finite"):
        c.to_ticks(np.array([0, 0, 0, 0, 0, np.nan]))


def test_save_load_and_clear_errors(tmp_path):
    c = calib_with()
    path = c.save(tmp_path / "so101.json")
    assert ArmCalibration.load(path) == c
    assert [p.name for p in tmp_path.iterdir()] == ["so101.json"]  # no temp file left
    data = json.loads(path.read_text())
    data["joints"]["elbow_flex"]["range_min"] += 1  # hand edit without updating the hash
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="sha256"):
        ArmCalibration.load(path)
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="version 99"):
        ArmCalibration.load(path)
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match=f"{path}: not valid JSON"):
        ArmCalibration.load(path)
    with pytest.raises(CalibrationError, match="no calibration at"):
        ArmCalibration.load(tmp_path / "missing.json")
    with pytest.raises(CalibrationError, match="in that order"):
        ArmCalibration("x", dict(reversed(list(c.joints.items()))))


_KILLER = r"""
import os, signal, sys
from hardware.arms.calibration import ArmCalibration, JointCalibration
from hardware.conventions import JOINT_NAMES
path, mode = sys.argv[1], sys.argv[2]
def make(v):
    return ArmCalibration("so101", {n: JointCalibration(i + 1, 0, v, 1000, 3000)
                                     for i, n in enumerate(JOINT_NAMES)})
if mode == "fsync":
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die with the data half-durable
    make(7).save(path)
else:
    print("GO", flush=True)
    v = 0
    while True:
        v = 1 - v
        make(v).save(path)
"""


def test_killed_mid_write_leaves_old_file_intact(tmp_path):
    path = tmp_path / "so101.json"
    old = calib_with()
    old.save(path)
    before = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    r = subprocess.run([sys.executable, "-c", _KILLER, str(path), "fsync"], env=env)
    assert r.returncode == -signal.SIGKILL
    assert path.read_bytes() == before and ArmCalibration.load(path) == old
    # SIGKILL at random moments of a save loop: the file always loads, as one of the versions.
    rng = np.random.default_rng(0)
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLER, str(path), "loop"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "GO"
        time.sleep(rng.uniform(0.01, 0.1))
        child.kill()
        child.wait()
        loaded = ArmCalibration.load(path)
        assert {j.homing_offset for j in loaded.joints.values()} <= {0, 1}


@given(
    mount=st.integers(0, 4095),
    half=st.integers(16, 2000),
    proto=st.sampled_from(["feetech", "dynamixel"]),
)
@settings(max_examples=300, deadline=None)
def test_half_turn_homing_keeps_the_wrap_outside_travel(mount, half, proto):
    offset = half_turn_offset(proto, mount)
    assert abs(offset) <= 2047 if proto == "feetech" else True
    # Present as the servo computes it (single-turn: modulo the resolution), over the sweep.
    moves = np.arange(-half, half + 1)
    actual = (mount + moves) % 4096
    present = (actual - offset) % 4096 if proto == "feetech" else (actual + offset) % 4096
    assert np.all(np.diff(present) == 1)  # monotonic: no 4095 -> 0 jump inside the range
    check_range("j", int(present.min()), int(present.max()))


def test_range_touching_the_wrap_is_refused():
    with pytest.raises(CalibrationError, match="encoder wrap"):
        check_range("elbow_flex", 3, 2000)
    with pytest.raises(CalibrationError, match="too small"):
        check_range("elbow_flex", 2000, 2010)


@pytest.mark.parametrize("robot", ["koch", "so101"])
@pytest.mark.parametrize("tamper", ["Homing_Offset", "Min_Position_Limit", "present"])
def test_one_tick_mismatch_refuses_torque(robot, tamper):
    calib = default_calibration(robot)
    kwargs = {}
    if tamper == "present":  # elbow one tick below its range
        kwargs["start_ticks"] = {"elbow_flex": calib.joints["elbow_flex"].range_min - 1}
    emu = emulate_arm(robot, calibration=calib, **kwargs).start()
    try:
        if tamper != "present":
            j = calib.joints["elbow_flex"]
            value = j.homing_offset if tamper == "Homing_Offset" else j.range_min
            emu.set(j.id, tamper, value + 1)
        arm = ServoArm(robot, emu.port, calib, bus_options=EMULATED_BUS_OPTIONS)
        match = "present position" if tamper == "present" else f"{tamper} is"
        with pytest.raises(CalibrationError, match=rf"elbow_flex \(id 3\): {match}"):
            arm.connect()
        assert not arm.is_connected
        assert [v for _, _, v in emu.writes("Torque_Enable") if v == 1] == []
    finally:
        emu.stop()


@pytest.mark.parametrize("robot", ["koch", "so101"])
def test_calibration_procedure_on_emulated_arm(robot, tmp_path):
    profile = get_profile(robot)
    emu = emulate_arm(robot).start()
    try:
        user = ScriptedUser(emu, profile, seed=3)
        with MotorBus(emu.port, profile.motors(), profile.protocol, latency_s=0.004) as bus:
            calib = calibrate(bus, profile, user.wait_for_user, user.sweep_done, poll_s=0)
        for i, (name, j) in enumerate(calib.joints.items()):
            assert emu.get(j.id, "Homing_Offset") == j.homing_offset
            assert emu.get(j.id, "Min_Position_Limit") == j.range_min
            if name in profile.full_turn:
                assert (j.range_min, j.range_max) == (0, 4095)
            else:  # the sweep was 2047 +- half
                assert abs(j.range_min - (2047 - user.half[i])) <= 2
                assert abs(j.range_max - (2047 + user.half[i])) <= 2
        path = calib.save(tmp_path / f"{robot}.json")
        emu.move_by_hand(3, 2047)
        with ServoArm(robot, emu.port, path, bus_options=EMULATED_BUS_OPTIONS) as arm:
            state = arm.get_observation()["state"]
            assert abs(state[2] - 0.0) < 0.5  # mid-range reads 0 degrees
    finally:
        emu.stop()


def test_cli_emulate(tmp_path, capsys):
    out = tmp_path / "cal.json"
    assert main(["--robot", "so101", "--emulate", "--out", str(out)]) == 0
    assert ArmCalibration.load(out).robot == "so101"
    assert "saved" in capsys.readouterr().out


def test_the_app_still_exports_the_procedure_and_the_scripted_user():
    # They lived in hardware.calibrate before moving into the arms and emulation layers.
    from hardware import calibrate as app

    assert app.calibrate is calibrate and app.ScriptedUser is ScriptedUser


def test_calibration_of_another_robot_is_refused_before_any_port_opens():
    with pytest.raises(CalibrationError, match="is for a 'koch' arm, this is a 'so101'"):
        ServoArm("so101", "/dev/does-not-exist", default_calibration("koch"))
