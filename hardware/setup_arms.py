"""What the apps that drive a servo arm share (`hardware.deploy`, `hardware.record`): checks of
their arguments that run before any port or camera opens, as `ArgumentError`s naming the flag.

The park-at-start exit is `hardware.arms.servo_arm.park_at_start`; the emulated follower (the
MuJoCo scene behind the servo emulator) is `hardware.emulation.follower.EmulatedFollower`.
"""

from __future__ import annotations

from pathlib import Path

from hardware.arms.calibration import ArmCalibration, CalibrationError
from hardware.cameras import parse_camera_spec


class ArgumentError(ValueError):
    """An argument is invalid; raised before any port or camera is opened."""


# -- validation (nothing opened) ------------------------------------------------------------------
def load_calibration(path: str | Path, robot: str, flag: str = "--calibration") -> ArmCalibration:
    """The calibration file for `robot`, or an `ArgumentError` naming the flag and the file."""
    try:
        calib = ArmCalibration.load(path)
    except CalibrationError as e:
        raise ArgumentError(f"{flag}: {e}") from None
    if calib.robot != robot:
        raise ArgumentError(f"{flag} {path} is for a {calib.robot!r} arm, not {robot!r}")
    return calib


def parse_cameras(spec: str, flag: str = "--cameras") -> dict[str, int | str]:
    """`parse_camera_spec`, its errors as `ArgumentError`s naming the flag."""
    try:
        return parse_camera_spec(spec)
    except ValueError as e:
        raise ArgumentError(f"{flag}: {e}") from None
