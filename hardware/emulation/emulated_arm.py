"""A whole emulated arm: a `ServoEmulator` with a profile's ids and models, its EEPROM set from a
calibration, and joints starting mid-range. Used by the tests, the benchmark and `--emulate` in
`python -m hardware.calibrate`, and by anyone who wants a `ServoArm` without hardware:

    emu = emulate_arm("so101").start()
    arm = ServoArm("so101", emu.port, default_calibration("so101"))
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hardware.arms.calibration import ArmCalibration, JointCalibration
from hardware.arms.profiles import ArmProfile, get_profile
from hardware.conventions import JOINT_NAMES
from hardware.emulation.emulator import Faults, ServoEmulator
from hardware.emulation.physics import FirstOrderServo, JointPhysics

# Typical half-ranges in ticks around mid-turn (2047) for a freshly calibrated arm: about
# +-110 deg pan, +-100 deg lift, +-97 deg elbow, +-95 deg wrist flex; wrist roll is a full turn.
_HALF_RANGE = {"shoulder_pan": 1250, "shoulder_lift": 1140, "elbow_flex": 1100, "wrist_flex": 1080}
_GRIPPER_RANGE = (1930, 3180)
MID = 2047


def default_calibration(profile: str | ArmProfile) -> ArmCalibration:
    """A plausible calibration (zero homing offsets) for an emulated arm of this profile."""
    p = get_profile(profile)
    joints = {}
    for name, motor_id in zip(JOINT_NAMES, p.ids, strict=True):
        if name in p.full_turn:
            lo, hi = 0, 4095
        elif name == "gripper":
            lo, hi = _GRIPPER_RANGE
        else:
            lo, hi = MID - _HALF_RANGE[name], MID + _HALF_RANGE[name]
        joints[name] = JointCalibration(motor_id, 0, 0, lo, hi)
    return ArmCalibration(p.name, joints)


def emulate_arm(
    profile: str | ArmProfile,
    calibration: ArmCalibration | None = None,
    physics: JointPhysics | None = None,
    faults: Faults | None = None,
    seed: int = 0,
    clock: Callable[[], float] = time.monotonic,
    start_ticks: dict[str, int] | None = None,
) -> ServoEmulator:
    """An emulator (not started) answering as the arm's servos, EEPROM matching `calibration`.

    Args:
        profile: robot profile name or object.
        calibration: written into each servo's EEPROM (homing offset, position limits);
            default `default_calibration(profile)`. Pass None-equivalent ranges to test refusal.
        physics: joint physics; default first-order servos.
        faults: fault knobs.
        seed: fault RNG seed.
        clock: time source of the physics.
        start_ticks: joint name -> present position at start; default the middle of each range.
    """
    p = get_profile(profile)
    calib = calibration or default_calibration(p)
    start = {n: (j.range_min + j.range_max) // 2 for n, j in calib.joints.items()}
    start.update(start_ticks or {})
    # Physics works in actual ticks: invert the servo's homing rule.
    sign = -1 if p.protocol == "dynamixel" else 1
    actual = [start[n] + sign * calib.joints[n].homing_offset for n in JOINT_NAMES]
    emu = ServoEmulator(
        p.protocol,
        dict(zip(p.ids, p.models, strict=True)),
        physics=physics or FirstOrderServo(actual),
        faults=faults,
        seed=seed,
        clock=clock,
    )
    for j in calib.joints.values():
        emu.set(j.id, "Homing_Offset", j.homing_offset)
        emu.set(j.id, "Min_Position_Limit", j.range_min)
        emu.set(j.id, "Max_Position_Limit", j.range_max)
    return emu
