"""`LeaderArm`: the other half of teleoperation, a leader arm read as a `Teleoperator`.

A person moves the leader (torque never on); its calibrated joint positions are the follower's
actions (`hardware.recording.teleop_rig`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hardware.arms.calibration import ArmCalibration, calibration_for, check_servos
from hardware.arms.profiles import ArmProfile, get_profile
from hardware.conventions import JOINT_NAMES
from hardware.motors.bus import MotorBus
from hardware.teleop import Teleoperator


class LeaderArm(Teleoperator):
    """A leader arm (e.g. `koch_leader`, or an SO-101 leader) as a teleoperator: a person moves
    it, and its joint positions, in calibrated LeRobot units, are the follower's actions.

    Torque is never enabled. A joint whose reading fails keeps its last value (the follower's
    `SafetyGuard` still rate limits whatever comes through).

    Args:
        profile: the leader's profile.
        port: its serial port.
        calibration: its `ArmCalibration` (or JSON path), checked against its EEPROM at connect.
        bus_options: extra `MotorBus` arguments.
    """

    name = "leader"

    def __init__(
        self,
        profile: str | ArmProfile,
        port: str,
        calibration: ArmCalibration | str | Path,
        bus_options: dict | None = None,
    ):
        self.profile = get_profile(profile)
        self.calibration = calibration = calibration_for(
            self.profile.name, calibration, f"this leader is a {self.profile.name!r} (on {port})"
        )
        self.bus = MotorBus(
            port,
            self.profile.motors(),
            self.profile.protocol,
            self.profile.baudrate,
            **(bus_options or {}),
        )
        self._ticks = np.zeros(6, np.int64)

    def connect(self) -> None:
        self.bus.connect()
        try:
            with self.bus.patient():  # set-up: a late reply is waited for, not an error
                self.bus.disable_torque()
                # Present positions may sit anywhere: the leader is moved by hand, readings clip.
                check_servos(self.calibration, self.bus, margin_ticks=-(10**6))
                present = self.bus.read_all("Present_Position")
                self._ticks = np.array([present[n] for n in JOINT_NAMES], np.int64)
        except BaseException:
            self.bus.disconnect()
            raise

    def disconnect(self) -> None:
        self.bus.disconnect()

    def get_action(self, observation: dict | None = None) -> np.ndarray:
        """(6,) float32 leader pose in LeRobot units (clipped to the calibrated ranges)."""
        result = self.bus.sync_read("Present_Position", budget_s=0.01)
        for i, name in enumerate(JOINT_NAMES):
            if name in result.values:
                self._ticks[i] = result.values[name]
        lo, hi = self.calibration.limits()
        return np.clip(self.calibration.to_units(self._ticks), lo, hi).astype(np.float32)
