"""`EmulatedFollower`: the MuJoCo scene (arm, cube, box) behind a byte-exact servo emulator, and a
`ServoArm` on its pty, for `python -m hardware.deploy --emulate` and
`python -m hardware.record --teleop leader --emulate`.
"""

from __future__ import annotations

import sys
import time

from hardware.arms.calibration import ArmCalibration
from hardware.arms.profiles import get_profile
from hardware.arms.servo_arm import ServoArm
from hardware.cameras import sim_cameras
from hardware.conventions import CAMERA_NAMES
from hardware.emulation.emulated_arm import default_calibration, emulate_arm
from hardware.emulation.emulator import EMULATED_BUS_OPTIONS, EMULATED_READ_BUDGET_S, VirtualClock
from hardware.emulation.sim_physics import SimArmPhysics
from hardware.sim.robot import SimRobot
from hardware.sim.task import SimTask


class EmulatedFollower(SimTask):
    """The MuJoCo scene (arm, cube, box) behind a byte-exact servo emulator on a pty; as a
    `SimTask`, the trial in that scene (each read under the emulator's lock).

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

    def __init__(
        self,
        robot: str = "so101",
        calibration: ArmCalibration | None = None,
        *,
        image_size: tuple[int, int] = (96, 128),
        cameras=CAMERA_NAMES,
        clock: str = "virtual",
        fps: float = 30.0,
    ):
        self.profile = get_profile(robot)
        self.calibration = calibration or default_calibration(self.profile)
        self.fps = fps
        self.vclock = VirtualClock() if clock == "virtual" else None
        self.scene = SimRobot(
            image_size=tuple(image_size), cameras=tuple(cameras), step_on_action=False
        )
        self.physics = SimArmPhysics(self.scene, self.calibration, self.profile.protocol)
        self.emu = emulate_arm(
            self.profile, calibration=self.calibration, physics=self.physics, clock=self.monotonic
        )
        # The emulator's thread steps the physics under this lock; frames need a still scene.
        self.lock = self.emu.lock

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
        return cls(
            self.profile,
            self.emu.port,
            self.calibration,
            cameras=sim_cameras(self.scene, self.lock),
            clock=self.clock,
            bus_options=EMULATED_BUS_OPTIONS,
            read_budget_s=EMULATED_READ_BUDGET_S,
            **kwargs,
        )

    def reset(self, seed: int | None = None, *, location: int | None = None) -> None:
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

    @property
    def num_locations(self) -> int:
        return self.scene.num_locations

    @property
    def cube_start_pose(self):
        return self.scene.cube_start_pose

    @property
    def location_id(self) -> int:
        return self.scene.location_id

    def cube_pose(self):
        with self.lock:
            return self.scene.cube_pose()

    def box_pose(self):
        return self.scene.box_pose()

    def outcome(self) -> dict:
        with self.lock:  # one still scene for every field
            return self.scene.outcome()

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
