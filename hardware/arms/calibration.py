"""Arm calibration: homing offsets and ranges per joint, unit conversion, atomic JSON, checks.

A calibration maps each servo's ticks to LeRobot units, so the real arm and the simulated arm share
one action space: arm joints in degrees around the middle of their range, the gripper 0..100.
Fields match LeRobot's `MotorCalibration` (`id, drive_mode, homing_offset, range_min, range_max`):

    degrees = (ticks - (range_min + range_max) / 2) * 360 / (resolution - 1)  (negated: drive_mode)
    gripper = (clip(ticks) - range_min) / (range_max - range_min) * 100  (100 - x if drive_mode)

Homing is the half-turn kind: with the arm held mid-range the offset is chosen so that the present
position reads `resolution // 2 - 1` (2047). The encoder's 0/4095 wrap then sits half a turn away
from the middle of travel, i.e. outside any range of motion under a full turn (LeRobot #3587 is
what happens when it is not). Feetech: `Present = Actual - Homing_Offset`; Dynamixel:
`Present = Actual + Homing_Offset`.

Files are written atomically (temporary file, fsync, rename, fsync of the directory), carry a
format version and a sha256 of their content, and are checked against the servos' EEPROM at
connect (`check_servos`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from hardware.arguments import ArgumentError
from hardware.conventions import JOINT_NAMES

CALIBRATION_VERSION = 1
GRIPPER = "gripper"


class CalibrationError(ValueError):
    """A calibration file is invalid, or does not match the servos."""


@dataclasses.dataclass(frozen=True)
class JointCalibration:
    """One joint, in servo ticks (LeRobot's `MotorCalibration`)."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


@dataclasses.dataclass(frozen=True)
class ArmCalibration:
    """Calibration of one arm.

    Attributes:
        robot: profile name (`"koch"`, `"so101"`, ...).
        joints: joint name -> `JointCalibration`, in `JOINT_NAMES` order.
        resolution: encoder ticks per turn.
    """

    robot: str
    joints: dict[str, JointCalibration]
    resolution: int = 4096

    def __post_init__(self):
        if tuple(self.joints) != JOINT_NAMES:
            raise CalibrationError(
                f"calibration for {self.robot!r} must list joints {JOINT_NAMES} in that order, got "
                f"{tuple(self.joints)}"
            )
        for name, j in self.joints.items():
            if not 0 <= j.range_min < j.range_max:
                raise CalibrationError(
                    f"{self.robot}/{name}: range [{j.range_min}, {j.range_max}]"
                    " is empty or negative"
                )
            if j.drive_mode not in (0, 1):
                raise CalibrationError(f"{self.robot}/{name}: drive_mode must be 0 or 1")

    # -- arrays ----------------------------------------------------------------------------------
    def _arrays(self):
        js = list(self.joints.values())
        lo = np.array([j.range_min for j in js], np.float64)  # (6,)
        hi = np.array([j.range_max for j in js], np.float64)
        flip = np.array([j.drive_mode == 1 for j in js])
        return lo, hi, flip

    def to_units(self, ticks) -> np.ndarray:
        """(6,) present positions in ticks -> (6,) float64 LeRobot units."""
        lo, hi, flip = self._arrays()
        t = np.asarray(ticks, np.float64)
        deg = (t - (lo + hi) / 2) * 360.0 / (self.resolution - 1)
        deg = np.where(flip, -deg, deg)
        pct = (np.clip(t, lo, hi) - lo) / (hi - lo) * 100.0
        pct = np.where(flip, 100.0 - pct, pct)
        return np.where(np.arange(6) == 5, pct, deg)

    def to_ticks(self, units) -> np.ndarray:
        """(6,) LeRobot units -> (6,) int64 ticks, clipped to each joint's range.

        Raises:
            CalibrationError: for non-finite input (a NaN must never become a goal position).
        """
        u = np.asarray(units, np.float64)
        if u.shape != (6,) or not np.all(np.isfinite(u)):
            raise CalibrationError(f"cannot convert {u!r} to ticks: need 6 finite values")
        lo, hi, flip = self._arrays()
        deg = np.where(flip, -u, u)
        t_deg = deg * (self.resolution - 1) / 360.0 + (lo + hi) / 2
        pct = np.where(flip, 100.0 - u, u)
        t_pct = lo + pct / 100.0 * (hi - lo)
        t = np.where(np.arange(6) == 5, t_pct, t_deg)
        return np.clip(np.rint(t), lo, hi).astype(np.int64)

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper), each (6,) float64, of the calibrated range in LeRobot units."""
        lo, hi, _ = self._arrays()
        a, b = self.to_units(lo), self.to_units(hi)
        return np.minimum(a, b), np.maximum(a, b)

    # -- files -----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        joints = {n: dataclasses.asdict(j) for n, j in self.joints.items()}
        body = {"robot": self.robot, "resolution": self.resolution, "joints": joints}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return {"version": CALIBRATION_VERSION, **body, "sha256": digest}

    @classmethod
    def from_json(cls, data: dict, source: str = "<dict>") -> ArmCalibration:
        try:
            version = data["version"]
            if version != CALIBRATION_VERSION:
                raise CalibrationError(
                    f"{source}: calibration version {version}, this code reads "
                    f"{CALIBRATION_VERSION}; recalibrate"
                )
            body = {k: data[k] for k in ("robot", "resolution", "joints")}
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            if data.get("sha256") != digest:
                raise CalibrationError(
                    f"{source}: content does not match its sha256 (edited or "
                    "damaged); recalibrate or restore a backup"
                )
            joints = {}
            for name, j in data["joints"].items():
                try:
                    joints[name] = JointCalibration(
                        **{
                            k: int(j[k])
                            for k in ("id", "drive_mode", "homing_offset", "range_min", "range_max")
                        }
                    )
                except (KeyError, TypeError, ValueError) as e:
                    raise CalibrationError(f"{source}: joint {name!r}: {e!r}") from None
            return cls(str(data["robot"]), joints, int(data["resolution"]))
        except KeyError as e:
            raise CalibrationError(f"{source}: missing field {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a crash at any point leaves either the old file or the new one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ArmCalibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(
                f"no calibration at {path}; run `python -m hardware.calibrate`"
            ) from None
        except json.JSONDecodeError as e:
            raise CalibrationError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(data, source=str(path))


# -- homing -------------------------------------------------------------------------------------
def half_turn_offset(protocol: str, actual: int, resolution: int = 4096) -> int:
    """Homing offset that makes `actual` read as mid-turn (2047 for 4096 ticks).

    Feetech stores the offset as sign-magnitude with 11 bits (|offset| <= 2047); the one position
    that would need 2048 gets 2047, i.e. reads one tick off mid-turn.
    """
    mid = resolution // 2 - 1
    if protocol == "feetech":
        return int(min(actual - mid, resolution // 2 - 1))
    return int(mid - actual)


def check_range(name: str, low: int, high: int, resolution: int = 4096, margin: int = 16) -> None:
    """Refuse a swept range that touches the encoder wrap (it would flip 4095 <-> 0 mid-travel)."""
    if low < margin or high > resolution - 1 - margin:
        raise CalibrationError(
            f"joint {name}: swept range [{low}, {high}] reaches the encoder wrap at "
            f"0/{resolution - 1}; home again with the joint nearer the middle of its travel"
        )
    if high - low < 2 * margin:
        raise CalibrationError(f"joint {name}: range [{low}, {high}] too small; was it moved?")


# -- checks against the servos --------------------------------------------------------------------
def check_servos(calib: ArmCalibration, bus, margin_ticks: int = 0) -> None:
    """Refuse an arm whose EEPROM disagrees with the file, or that sits outside its range.

    Args:
        calib: the calibration file's content.
        bus: a connected `MotorBus` whose motor names are `JOINT_NAMES`.
        margin_ticks: how far inside `[range_min, range_max]` present positions must be.

    Raises:
        CalibrationError: listing every mismatch (register, file value, servo value, motor id).
    """
    problems = []
    eeprom = {
        reg: bus.read_all(reg)
        for reg in ("Homing_Offset", "Min_Position_Limit", "Max_Position_Limit")
    }
    present = bus.read_all("Present_Position")
    for name, j in calib.joints.items():
        motor_id = bus.motors[name].id
        if motor_id != j.id:
            problems.append(f"{name}: file says id {j.id}, bus has id {motor_id}")
        expect = {
            "Homing_Offset": j.homing_offset,
            "Min_Position_Limit": j.range_min,
            "Max_Position_Limit": j.range_max,
        }
        for reg, want in expect.items():
            got = eeprom[reg][name]
            if got != want:
                problems.append(
                    f"{name} (id {motor_id}): {reg} is {got} on the servo, {want} in the file"
                )
        p = present[name]
        if not j.range_min + margin_ticks <= p <= j.range_max - margin_ticks:
            problems.append(
                f"{name} (id {motor_id}): present position {p} outside calibrated "
                f"range [{j.range_min}, {j.range_max}] (margin {margin_ticks})"
            )
    if problems:
        raise CalibrationError(
            f"calibration {calib.robot!r} does not match the arm on {bus.port}; torque stays "
            "off:\n  "
            + "\n  ".join(problems)
            + "\nRecalibrate with `python -m hardware.calibrate`, or move the joint into range."
        )


def calibration_for(robot: str, calibration, mismatch: str) -> ArmCalibration:
    """Loads `calibration` (a file or an ArmCalibration) and checks it belongs to a `robot` arm
    (a profile name), before any port is opened. `mismatch` ends the error message."""
    if not isinstance(calibration, ArmCalibration):
        calibration = ArmCalibration.load(calibration)
    if calibration.robot != robot:
        raise CalibrationError(f"calibration is for a {calibration.robot!r} arm, {mismatch}")
    return calibration


def load_calibration(path: str | Path, robot: str, flag: str = "--calibration") -> ArmCalibration:
    """The calibration file a command's `flag` names for a `robot` arm, checked before any port
    opens.

    Raises:
      ArgumentError: naming the flag and the file (missing, invalid, or another arm's).
    """
    try:
        calib = ArmCalibration.load(path)
    except CalibrationError as e:
        raise ArgumentError(f"{flag}: {e}") from None
    if calib.robot != robot:
        raise ArgumentError(f"{flag} {path} is for a {calib.robot!r} arm, not {robot!r}")
    return calib
