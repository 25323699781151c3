"""Real arms (Koch v1.1, SO-100/SO-101): `ServoArm`, the `Robot` that drives one.

`ServoArm` joins a `MotorBus`, an `ArmCalibration` and the host-side safety layer:

    connect         ping + model check of every id  ->  torque off, configure  ->  EEPROM and
                    present positions checked against the calibration  ->  goal := present  ->
                    torque on. Any failure before the last step leaves torque off.
    get_observation sync read of Present_Position (retries inside the tick budget); a joint that
                    misses a tick (or whose reading jumps further than a servo can move, e.g.
                    a reply mangled under a valid 8-bit checksum) keeps its last value and is
                    flagged in `last_read`; K missed ticks in a row (or a servo reporting
                    overheat/overload) -> protective stop with torque off. One joint's load and
                    temperature are read per tick, round robin.
    send_action     SafetyGuard -> ticks -> sync write; returns what was sent. K bad actions in a
                    row -> protective stop holding the last safe pose.
    disconnect      hold or park (SafetyConfig.exit_mode), then torque off, with Ctrl-C deferred so
                    a second press cannot skip it.

Torque off (protective stop, disconnect, a failed connect) is confirmed by reading Torque_Enable
back from every servo (`MotorBus.disable_torque`); the servos that did not read back 0 are in
`torque_unconfirmed` ("elbow_flex (id 3)", ...; all of them if the bus failed), and an app must
name them instead of saying the torque is off (`torque_off_problem`).

After a protective stop `get_observation` and `send_action` raise `ProtectiveStop`; the control loop
ends and its `finally`/context manager calls `disconnect`.

The other half of teleoperation, a leader arm read as a `Teleoperator`, is
`hardware.arms.leader_arm.LeaderArm`; robot profiles (ids, models, setup writes) are in
`hardware.arms.profiles`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hardware.arms.calibration import ArmCalibration, calibration_for, check_servos
from hardware.arms.profiles import ArmProfile, get_profile
from hardware.arms.safety import (
    Level,
    SafetyConfig,
    SafetyGuard,
    Status,
    ThermalMonitor,
    deferred_sigint,
)
from hardware.cameras.camera import Camera
from hardware.conventions import FPS, JOINT_NAMES
from hardware.motors.bus import MotorBus, MotorBusError, MotorCommError
from hardware.robot import Robot

log = logging.getLogger(__name__)


class ProtectiveStop(RuntimeError):
    """The arm was stopped for safety; reconnect after fixing the cause."""


@dataclasses.dataclass(frozen=True)
class ReadReport:
    """Freshness of the last observation. `fresh`, `missed_ticks`: (6,) per joint."""

    fresh: np.ndarray
    missed_ticks: np.ndarray
    errors: dict[str, int]


# Feetech status bits that mean the servo is in trouble: overheat, over current, overload.
_FEETECH_FATAL = (1 << 2) | (1 << 3) | (1 << 5)


class ServoArm(Robot):
    """A Koch or SO-100/SO-101 arm on one serial bus.

    Args:
        profile: `"koch"`, `"so101"`, ... or an `ArmProfile`.
        port: serial device.
        calibration: an `ArmCalibration` or the path of its JSON file.
        safety: `SafetyConfig` (defaults are on; there is no way to turn the guard off).
        cameras: camera name -> `hardware.cameras.Camera` (connected by the caller); any
          callable returning an (H, W, 3) uint8 RGB frame works.
        clock: object with `monotonic()` and `sleep(s)` (the `time` module, or a virtual clock).
        bus_options: extra `MotorBus` arguments (latency_s, max_retries, budget_s).
        read_budget_s: time budget for the position read of one tick, retries included.
    """

    fps = FPS

    def __init__(
        self,
        profile: str | ArmProfile,
        port: str,
        calibration: ArmCalibration | str | Path,
        safety: SafetyConfig | None = None,
        cameras: dict[str, Camera | Callable[[], np.ndarray]] | None = None,
        clock=time,
        bus_options: dict | None = None,
        read_budget_s: float = 0.015,
    ):
        self.profile = get_profile(profile)
        self.robot_type = self.profile.name
        self.calibration = calibration = calibration_for(
            self.profile.name,
            calibration,
            f"this is a {self.profile.name!r} (on {port}); pass that arm's calibration file",
        )
        self.safety = safety or SafetyConfig()
        self._cameras = dict(cameras or {})
        self.cameras = tuple(self._cameras)
        self.clock = clock
        self.read_budget_s = read_budget_s
        self.bus = MotorBus(
            port,
            self.profile.motors(),
            self.profile.protocol,
            self.profile.baudrate,
            **(bus_options or {}),
        )
        lower, upper = calibration.limits()
        self.guard = SafetyGuard(lower, upper, self.safety)
        self.monitor = ThermalMonitor(self.safety)
        self._ticks = np.zeros(6, np.int64)
        self._missed = np.zeros(6, np.int64)
        self._suspect: list[float | None] = [None] * 6
        self._obs_time: float | None = None
        self._rr = 0
        self._connected = False
        self.stop_reason: str | None = None
        self._torque_cut = False
        self.torque_unconfirmed: list[str] = []  # after the last torque off: see the docstring
        self.last_read: ReadReport | None = None
        self.last_command = None

    # -- connection -----------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if self._connected:
            return
        self.torque_unconfirmed = []
        self.bus.connect()  # handshake: every id answers with the right model, or raise
        try:
            with self.bus.patient():  # set-up: a late reply is waited for, not an error
                self.bus.disable_torque()
                for register, values in self.profile.setup:
                    for name, value in zip(JOINT_NAMES, values, strict=True):
                        if value is not None:
                            self.bus.write(register, name, value)
                check_servos(self.calibration, self.bus)
                present = self.bus.read_all("Present_Position")
                self._ticks = np.array([present[n] for n in JOINT_NAMES], np.int64)
                self.guard.reset(self.calibration.to_units(self._ticks))
                self.bus.sync_write("Goal_Position", present)  # torque on must not make it jump
                self.bus.enable_torque()
        except BaseException:
            self._torque_off()
            self.bus.disconnect()
            raise
        self._missed[:] = 0
        self.stop_reason = None
        self._torque_cut = False
        self._connected = True

    def disconnect(self) -> None:
        """Hold or park, then torque off; Ctrl-C is ignored until the arm is safe."""
        if not self._connected:
            return
        with deferred_sigint():
            try:
                # After a stop that already cut torque (lost servo, overheat) there is nothing
                # to hold; otherwise hold or park before letting go.
                if not self._torque_cut:
                    if self.safety.exit_mode == "park":
                        self._park()
                    else:
                        self._hold()
            except MotorBusError as e:
                log.error("could not hold/park before torque off: %s", e)
            try:
                self._torque_off()
            finally:
                self.bus.disconnect()
                self._connected = False

    def _torque_off(self) -> None:
        """Torque off on every servo, read back; sets and logs `torque_unconfirmed`."""
        try:
            unconfirmed = self.bus.disable_torque()
        except MotorBusError as e:
            log.error("torque off failed: %s", e)
            unconfirmed = list(self.bus.motors)
        self.torque_unconfirmed = [self.bus.label(n) for n in unconfirmed]
        if unconfirmed:
            log.error(
                "torque off not confirmed by %s: Torque_Enable did not read back 0",
                ", ".join(self.torque_unconfirmed),
            )

    def _hold(self) -> None:
        result = self.bus.sync_read("Present_Position", budget_s=0.03)
        goal = {n: int(v) for n, v in zip(JOINT_NAMES, self._ticks, strict=True)}
        goal.update(result.values)
        self.bus.sync_write("Goal_Position", goal)

    def _park(self) -> None:
        target = np.asarray(self.safety.park_pose, np.float64)
        pose = self.guard.last.copy()
        t_end = self.clock.monotonic() + self.safety.park_time_s
        while self.clock.monotonic() < t_end:
            pose = np.clip(target, pose - self.guard.step, pose + self.guard.step)
            pose = np.clip(pose, self.guard.lower, self.guard.upper)
            ticks = self.calibration.to_ticks(pose)
            self.bus.sync_write(
                "Goal_Position", dict(zip(JOINT_NAMES, map(int, ticks), strict=True))
            )
            if np.allclose(pose, np.clip(target, self.guard.lower, self.guard.upper)):
                break
            self.clock.sleep(1.0 / self.fps)
        self.clock.sleep(0.3)  # let the joints settle on the park pose before torque goes off

    # -- protective stop ------------------------------------------------------------------------
    def _protective_stop(self, reason: str, torque_off: bool) -> None:
        self.stop_reason = reason
        self._torque_cut = torque_off
        self.guard.stop(reason)
        if torque_off:
            self._torque_off()
        else:
            try:
                self._hold()
            except MotorBusError as e:
                log.error("protective stop: bus failed too: %s", e)
        raise ProtectiveStop(reason)

    def _check_stopped(self) -> None:
        if self.stop_reason is not None:
            raise ProtectiveStop(self.stop_reason)

    def _fatal(self, error: int) -> bool:
        if self.profile.protocol == "dynamixel":
            return bool(error & 0x80)  # hardware alert: the servo has already dropped torque
        return bool(error & _FEETECH_FATAL)

    # -- the tick -------------------------------------------------------------------------------
    def get_observation(self) -> dict:
        self._check_stopped()
        now = self.clock.monotonic()
        result = self.bus.sync_read("Present_Position", budget_s=self.read_budget_s)
        fresh = np.zeros(6, bool)
        for i, name in enumerate(JOINT_NAMES):
            if name in result.values and self._plausible(i, result.values[name]):
                self._ticks[i] = result.values[name]
                fresh[i] = True
        self._missed = np.where(fresh, 0, self._missed + 1)
        self.last_read = ReadReport(fresh, self._missed.copy(), dict(result.errors))
        bad = [n for n, e in result.errors.items() if self._fatal(e)]
        if bad:
            names = {n: self.bus.protocol.error_names(result.errors[n]) for n in bad}
            self._protective_stop(f"servo error on {names}", torque_off=True)
        dead = [
            self.bus.label(n)
            for n, k in zip(JOINT_NAMES, self._missed, strict=True)
            if k >= self.safety.comm_fail_ticks
        ]
        if dead:
            self._protective_stop(
                f"no position from {', '.join(dead)} for {self.safety.comm_fail_ticks} ticks",
                torque_off=True,
            )
        self._health_tick()
        self._obs_time = now
        images = {name: cam() for name, cam in self._cameras.items()}
        return {
            "images": images,
            "state": self.calibration.to_units(self._ticks).astype(np.float32),
        }

    def _plausible(self, i: int, ticks: int) -> bool:
        """False for a reading that jumped further than a servo can move since the last one,
        unless the previous reading already said the same (then it is real and accepted)."""
        t = self._ticks.copy()
        t[i] = ticks
        new = self.calibration.to_units(t)[i]
        old = self.calibration.to_units(self._ticks)[i]
        allowed = self.safety.max_jump * (self._missed[i] + 1)
        confirmed = self._suspect[i] is not None and abs(new - self._suspect[i]) <= allowed
        if abs(new - old) <= allowed or confirmed:
            self._suspect[i] = None
            return True
        self._suspect[i] = new
        return False

    def _health_tick(self) -> None:
        """Read load and temperature of one joint (round robin) and act on the thresholds."""
        i = self._rr
        self._rr = (self._rr + 1) % 6
        name = JOINT_NAMES[i]
        got = self.bus.read_span(name, ["Present_Load", "Present_Temperature"], budget_s=0.004)
        if got is None:
            return
        values, error = got
        level = self.monitor.update(
            name, values["Present_Temperature"], values["Present_Load"] / 1000.0
        )
        self.guard.derate(i, level >= Level.DERATE)
        if level is Level.STOP or self._fatal(error):
            self._protective_stop(
                f"{name}: {values['Present_Temperature']} C, load "
                f"{values['Present_Load'] / 10:.0f} %",
                torque_off=True,
            )

    def send_action(self, action) -> np.ndarray:
        self._check_stopped()
        now = self.clock.monotonic()
        cmd = self.guard.filter(action, now, stamp=self._obs_time)
        self.last_command = cmd
        if cmd.status is Status.STOPPED:
            self._protective_stop(self.guard.stop_reason, torque_off=False)
        ticks = self.calibration.to_ticks(cmd.goal)
        try:
            self.bus.sync_write(
                "Goal_Position", dict(zip(JOINT_NAMES, map(int, ticks), strict=True))
            )
        except MotorCommError as e:
            self._protective_stop(str(e), torque_off=True)
        return cmd.goal.astype(np.float32)


def park_at_start(arm: ServoArm, park_pose: tuple[float, ...] | None = None) -> None:
    """On disconnect, park `arm` at `park_pose` (default: the pose it connected at), then torque
    off. Call right after `connect`."""
    start = tuple(float(v) for v in arm.guard.last)
    arm.safety = dataclasses.replace(arm.safety, exit_mode="park", park_pose=park_pose or start)


def torque_off_problem(robot) -> str | None:
    """None if `robot` is no servo arm or read back torque off from every servo; otherwise what
    an app must say instead of "torque is off", naming each servo that did not confirm it."""
    unconfirmed = getattr(robot, "torque_unconfirmed", None)
    if not unconfirmed:
        return None
    return (
        f"TORQUE OFF NOT CONFIRMED by {', '.join(unconfirmed)}: Torque_Enable did not read "
        "back 0, so the arm may still be energised; cut its power before touching it"
    )
