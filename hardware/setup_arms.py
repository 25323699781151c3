"""What the apps that drive a servo arm share (`hardware.deploy`, `hardware.record`): checks of
their arguments that run before any port or camera opens, the park-at-start exit, and the
emulated follower (the MuJoCo scene behind the servo emulator, a `ServoArm` on its pty).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from hardware.arms import ServoArm, get_profile
from hardware.calibration import ArmCalibration, CalibrationError
from hardware.cameras import parse_camera_spec, sim_cameras
from hardware.conventions import CAMERA_NAMES


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


def park_at_start(arm: ServoArm, park_pose: tuple[float, ...] | None = None) -> None:
    """On disconnect, park `arm` at `park_pose` (default: the pose it connected at), then torque
    off. Call right after `connect`."""
    start = tuple(float(v) for v in arm.guard.last)
    arm.safety = dataclasses.replace(arm.safety, exit_mode="park", park_pose=park_pose or start)


# -- the emulated follower ------------------------------------------------------------------------
class EmulatedFollower:
    """The MuJoCo scene (arm, cube, box) behind a byte-exact servo emulator on a pty.

    `arm()` is a `ServoArm` on the emulator's port whose cameras render the scene, so the whole
    real stack (pyserial, protocol, `MotorBus`, calibration, `SafetyGuard`) drives the sim arm.
    With `clock="virtual"` emulated time advances only by `tick()` (1/fps), so a slow CPU runs
    the same 30 Hz control as a fast one, only slower than the wall clock.

    Args:
      robot: arm profile name.
      calibration: written into the emulated EEPROM (default `default_calibration(robot)`).
      image_size, cameras: what the scene renders.
      clock: "virtual" or "real" (the wall clock).
      fps: the tick of the virtual clock.
    """

    def __init__(self, robot: str = "so101", calibration: ArmCalibration | None = None, *,
                 image_size: tuple[int, int] = (96, 128), cameras=CAMERA_NAMES,
                 clock: str = "virtual", fps: float = 30.0):
        from hardware.motors.emulated_arm import default_calibration, emulate_arm
        from hardware.motors.emulator import VirtualClock
        from hardware.motors.sim_physics import SimArmPhysics
        from hardware.sim import SimRobot

        self.profile = get_profile(robot)
        self.calibration = calibration or default_calibration(self.profile)
        self.fps = fps
        self.vclock = VirtualClock() if clock == "virtual" else None
        self.scene = SimRobot(image_size=tuple(image_size), cameras=tuple(cameras),
                              step_on_action=False)
        self.physics = SimArmPhysics(self.scene, self.calibration, self.profile.protocol)
        self.emu = emulate_arm(self.profile, calibration=self.calibration, physics=self.physics,
                               clock=self.monotonic)
        # The emulator's thread steps the physics under this lock; frames need a still scene.
        self.lock = self.emu._lock

    def monotonic(self) -> float:
        return self.vclock.monotonic() if self.vclock is not None else time.monotonic()

    @property
    def clock(self):
        """What the arm's code sleeps on: the virtual clock, or the `time` module."""
        return self.vclock or time

    def start(self) -> EmulatedFollower:
        self.emu.start()
        self.scene.connect()  # the renderer
        return self

    def arm(self, cls: type[ServoArm] = ServoArm, **kwargs) -> ServoArm:
        """A `ServoArm` (or subclass `cls`) on the emulated port, not connected."""
        # The emulator is a thread on a CPU shared with the app (and, here, other jobs): as in
        # the arm tests, 8 ms to answer and 30 ms a read keep a scheduling stall from looking
        # like a dead servo. With the virtual clock this costs wall time only.
        return cls(self.profile, self.emu.port, self.calibration,
                        cameras=sim_cameras(self.scene, self.lock), clock=self.clock,
                        bus_options={"latency_s": 0.008}, read_budget_s=0.03, **kwargs)

    def reset(self, seed: int, location: int | None = None) -> None:
        """A new trial: arm at HOME (its servos holding), the cube at the pose `seed` draws, the
        servos cool."""
        with self.lock:
            for j in range(6):
                self.physics.set_torque(j, True)
            self.scene.reset(seed=seed, location=location)
            # Each episode is an independent trial: servos start cool. (Back to back with no
            # rest, a gripper squeezing the cube at full load reaches the 65 C stop within about
            # five episodes.)
            self.physics.temp[:] = self.physics.ambient

    def success(self) -> bool:
        with self.lock:
            return self.scene.success()

    def tick(self) -> None:
        """One control period passes (virtual clock only)."""
        if self.vclock is not None:
            self.vclock.advance(1.0 / self.fps)

    def torque_report(self) -> str:
        """The servos' Torque_Enable now, and the last value the wire log saw written to each."""
        torque = [self.emu.get(i, "Torque_Enable") for i in self.profile.ids]
        last = {i: v for _, i, v in self.emu.writes("Torque_Enable")}
        written = " ".join(str(last.get(i, "-")) for i in self.profile.ids)
        return f"torque on {sum(torque)}/{len(torque)} (last Torque_Enable written: {written})"

    def stop(self) -> None:
        """Prints the servos' torque state, then stops the emulator and the renderer."""
        print(f"emulated servos at exit: {self.torque_report()}", file=sys.stderr)
        self.emu.stop()
        self.scene.disconnect()
