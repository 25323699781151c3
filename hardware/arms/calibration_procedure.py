"""The calibration procedure on a connected bus (LeRobot's, with the wrap check added):

1. Torque off; homing offsets cleared; position limits opened to the full turn.
2. The arm is held in the middle of its range: each joint's homing offset is set so that it reads
   mid-turn (2047) there, which puts the encoder's 0/4095 wrap half a turn away.
3. Every joint (except full-turn ones: Koch pan and wrist roll, SO-101 wrist roll) is moved
   through its whole range: the minimum and maximum are recorded live.
4. Ranges are checked against the wrap (`check_range`) and written to the servos' EEPROM position
   limits. Saving the file is the caller's (`ArmCalibration.save`).

It never prompts: the person (or `hardware.emulation.scripted_user.ScriptedUser`) is two
callables, `wait_for_user(message)` and `sweep_done()`. `python -m hardware.calibrate` is the app
that joins it to a port and a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hardware.arms.calibration import (
    ArmCalibration,
    JointCalibration,
    check_range,
    half_turn_offset,
)
from hardware.arms.profiles import ArmProfile
from hardware.conventions import JOINT_NAMES
from hardware.motors.bus import MotorBus


def calibrate(
    bus: MotorBus,
    profile: ArmProfile,
    wait_for_user: Callable[[str], None],
    sweep_done: Callable[[], bool],
    on_sample: Callable[[dict[str, int], dict[str, int], dict[str, int]], None] | None = None,
    poll_s: float = 0.02,
) -> ArmCalibration:
    """Run the procedure on a connected bus; return the calibration (also written to EEPROM).

    Args:
        bus: connected `MotorBus` with motors named `JOINT_NAMES`.
        profile: the arm profile (which joints are full-turn).
        wait_for_user: shows an instruction and returns when the user is ready.
        sweep_done: polled during the range sweep; True ends it.
        on_sample: called with (present, mins, maxs) at every sweep sample, for a live display.
        poll_s: seconds between sweep samples.
    """
    # Every transaction here is set-up: a late reply is waited for (`MotorBus.patient`).
    with bus.patient():
        return _procedure(bus, profile, wait_for_user, sweep_done, on_sample, poll_s)


def _procedure(bus, profile, wait_for_user, sweep_done, on_sample, poll_s) -> ArmCalibration:
    resolution = bus.models[JOINT_NAMES[0]].resolution
    bus.disable_torque()
    for name in JOINT_NAMES:
        bus.write("Homing_Offset", name, 0)
        bus.write("Min_Position_Limit", name, 0)
        bus.write("Max_Position_Limit", name, resolution - 1)
    wait_for_user("Move the arm to the MIDDLE of its range of motion, then press Enter.")
    actual = bus.read_all("Present_Position")
    offsets = {n: half_turn_offset(profile.protocol, actual[n], resolution) for n in JOINT_NAMES}
    for name, offset in offsets.items():
        bus.write("Homing_Offset", name, offset)
    present = bus.read_all("Present_Position")
    mins, maxs = dict(present), dict(present)
    swept = [n for n in JOINT_NAMES if n not in profile.full_turn]
    wait_for_user(
        f"Move {', '.join(swept)} one by one through their ENTIRE range; press Enter when done."
    )
    while not sweep_done():
        result = bus.sync_read("Present_Position", budget_s=0.05)
        for name, value in result.values.items():
            mins[name] = min(mins[name], value)
            maxs[name] = max(maxs[name], value)
        if on_sample is not None:
            on_sample(result.values, mins, maxs)
        time.sleep(poll_s)
    joints = {}
    for name, motor_id in zip(JOINT_NAMES, profile.ids, strict=True):
        if name in profile.full_turn:
            lo, hi = 0, resolution - 1
        else:
            lo, hi = mins[name], maxs[name]
            check_range(name, lo, hi, resolution)
        joints[name] = JointCalibration(motor_id, 0, offsets[name], lo, hi)
    for name, j in joints.items():
        bus.write("Min_Position_Limit", name, j.range_min)
        bus.write("Max_Position_Limit", name, j.range_max)
    return ArmCalibration(profile.name, joints, resolution)
