"""Leader -> follower teleoperation for `python -m hardware.record --teleop leader`.

A person moves a leader arm (`LeaderArm`: torque off, positions read); the follower (`ServoArm`)
goes where the leader is, through its `SafetyGuard`; the recorder stores the follower's
positions as the state, the targets sent as the action and the cameras' frames. This module
holds what is particular to that set-up:

- `TeleopSettings`: the checked arguments (checked before any port or camera opens by
  `hardware.record.check_args`).
- `TeleopRig`: opens what the arms need (cameras, or the emulators), builds the follower and
  the leader, and runs the time between episodes: the follower keeps following the leader,
  unrecorded, while the person puts the arm back and resets the scene, until Enter (record the
  next episode), `r` + Enter (re-record the last one) or `q` + Enter (stop); or, with
  `--reset-time S`, for S seconds.
- `--emulate`: the follower is the MuJoCo scene behind the servo emulator (`EmulatedFollower`,
  as in `hardware.deploy`), the leader a second emulated arm whose joints a scripted hand
  (`ScriptedHand`) moves along the scripted expert's plan. Between episodes the hand brings the
  leader (and so the follower) back home and the cube is reset. The demonstrations are then
  real pick-and-place demos recorded through pyserial, the protocol, the buses, both
  calibrations and the follower's safety layer; the sim's success check says whether each
  worked. Emulated time is a virtual clock advanced 1/fps per tick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import sys
import time

import numpy as np

from hardware.arms import LeaderArm, ServoArm
from hardware.arms.calibration import ArmCalibration
from hardware.arms.servo_arm import park_at_start
from hardware.cameras import close_cameras, open_cameras
from hardware.control_loop import run_loop
from hardware.conventions import CAMERA_NAMES, FPS, JOINT_NAMES
from hardware.emulation.emulated_arm import default_calibration, emulate_arm
from hardware.emulation.emulator import EMULATED_BUS_OPTIONS
from hardware.emulation.follower import EmulatedFollower
from hardware.sim.expert import ScriptedExpert, min_jerk
from hardware.sim.robot import HOME
from hardware.teleop import Teleoperator

# The leader that goes with each follower (an SO-101 leader is an SO-101 with other gearing).
LEADER_PROFILE = {"so101": "so101", "so100": "so100", "koch": "koch_leader"}
EMULATED_RESET_S = 1.0  # --emulate: the hand's way home between episodes


@dataclasses.dataclass
class TeleopSettings:
    """Checked arguments of a leader -> follower recording."""

    robot: str
    leader: str
    calibration: ArmCalibration | None  # None only with emulate (default calibration)
    leader_calibration: ArmCalibration | None
    port: str | None = None
    leader_port: str | None = None
    cameras: dict[str, int | str] | None = None  # name -> device index or path
    image_size: tuple[int, int] = (480, 640)
    reset_time: float | None = None  # None: ask on the terminal
    emulate: bool = False
    seed: int = 0


class FollowerArm(ServoArm):
    """A `ServoArm` that, when it lets go (end, Ctrl-C), parks where it connected, then turns
    torque off."""

    def connect(self) -> None:
        was = self.is_connected
        super().connect()
        if not was:
            park_at_start(self)


def min_jerk_path(start, end, ticks: int) -> np.ndarray:
    """(ticks, 6) poses from `start` to `end` with zero speed at both ends."""
    s = min_jerk(np.arange(1, ticks + 1) / ticks)
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    return start + s[:, None] * (end - start)


class ScriptedHand(Teleoperator):
    """A leader arm moved by a scripted hand along the scripted expert's plan (`--emulate`).

    Each tick the hand puts the emulated leader's joints at the plan's next pose (as a person's
    hand would, torque off), then the real `LeaderArm` reads them over its bus: the action is
    what the leader reports, not the plan.

    Args:
      leader: the `LeaderArm` on the emulated leader's port.
      emu: that leader's `ServoEmulator`.
      follower: the `EmulatedFollower` whose scene the expert plans in.
      seed: the expert's timing seed.
    """

    name = "leader"

    def __init__(self, leader: LeaderArm, emu, follower: EmulatedFollower, seed: int = 0):
        self.leader, self.emu, self.follower = leader, emu, follower
        self.expert = ScriptedExpert(follower.scene, seed=seed)
        self.path = np.zeros((0, 6))
        self.k = 0
        self.pose = follower.scene.state().astype(np.float64)

    @property
    def settings(self) -> dict:
        return {"hand": "scripted expert", **self.expert.settings}

    def connect(self) -> None:
        self.leader.connect()

    def disconnect(self) -> None:
        self.leader.disconnect()

    def reset(self) -> None:
        """Plans this episode's demonstration from the scene's cube (just reset)."""
        with self.follower.lock:
            self.expert.reset()
        self.path, self.k = self.expert.plan.actions.astype(np.float64), 0

    def go_home(self, ticks: int) -> None:
        """The hand's next `ticks` moves take the leader back to the rest pose."""
        self.path, self.k = min_jerk_path(self.pose, HOME, max(1, ticks)), 0

    @property
    def done(self) -> bool:
        return self.k >= len(self.path)

    def move(self, pose) -> None:
        """Puts the leader's joints at `pose` (LeRobot units)."""
        self.pose = np.asarray(pose, np.float64)
        ticks = self.leader.calibration.to_ticks(self.pose)
        for name, t in zip(JOINT_NAMES, ticks, strict=True):
            self.emu.move_by_hand(self.leader.calibration.joints[name].id, int(t))

    def get_action(self, observation: dict) -> np.ndarray:
        if len(self.path):
            self.move(self.path[min(self.k, len(self.path) - 1)])
        self.k += 1
        return self.leader.get_action(observation)


class _Lines:
    """Lines typed on the terminal, polled without blocking. Reads the file descriptor itself:
    a buffered `sys.stdin.readline` could swallow several lines while `select` then says no
    more are waiting."""

    def __init__(self, stream=None):
        self.fd = (stream or sys.stdin).fileno()
        self.buf = b""
        self.eof = False

    def poll(self) -> str | None:
        """The next line (stripped, lower case), "q" at end of input, None if none yet."""
        while b"\n" not in self.buf and not self.eof:
            ready, _, _ = select.select([self.fd], [], [], 0)
            if not ready:
                return None
            chunk = os.read(self.fd, 1024)
            self.buf += chunk
            self.eof = not chunk
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            return line.decode(errors="replace").strip().lower()
        return "q"  # end of input: nobody is left to answer


class TeleopRig:
    """Opens what a leader -> follower recording needs and runs the time between episodes.

    `with TeleopRig(settings) as rig:` opens the cameras (or starts the emulators); then
    `rig.follower()` and `rig.leader()` are the robot and the teleoperator (connected by the
    recorder's `with`). Leaving closes the cameras (or stops the emulators, printing the
    follower's torque state from its servos).
    """

    def __init__(self, settings: TeleopSettings):
        self.s = settings
        self.fps = float(FPS)
        self.realtime = not settings.emulate
        self.emulated: EmulatedFollower | None = None
        self.leader_emu = None
        self.hand: ScriptedHand | None = None
        self._cams: dict = {}
        self._lines: _Lines | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> TeleopRig:
        s = self.s
        try:
            if s.emulate:
                self.emulated = EmulatedFollower(
                    s.robot,
                    s.calibration,
                    image_size=s.image_size,
                    cameras=CAMERA_NAMES,
                    fps=self.fps,
                ).start()
                self._stack.callback(self.emulated.stop)
                lcal = s.leader_calibration or default_calibration(s.leader)
                home = dict(zip(JOINT_NAMES, map(int, lcal.to_ticks(HOME)), strict=True))
                self.leader_emu = emulate_arm(
                    s.leader, calibration=lcal, start_ticks=home, clock=self.emulated.monotonic
                ).start()
                self._stack.callback(self.leader_emu.stop)
                self.s = dataclasses.replace(s, leader_calibration=lcal)
            else:
                h, w = s.image_size
                self._cams = open_cameras(s.cameras, w, h, self.fps)
                self._stack.callback(close_cameras, self._cams)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self._stack.close()
        return False

    # -- the robot and the teleoperator (not connected) ------------------------------------------
    def follower(self) -> ServoArm:
        if self.emulated is not None:
            return self.emulated.arm(cls=FollowerArm)
        return FollowerArm(self.s.robot, self.s.port, self.s.calibration, cameras=self._cams)

    def leader(self, robot) -> Teleoperator:
        if self.emulated is None:
            return LeaderArm(self.s.leader, self.s.leader_port, self.s.leader_calibration)
        leader = LeaderArm(
            self.s.leader,
            self.leader_emu.port,
            self.s.leader_calibration,
            bus_options=EMULATED_BUS_OPTIONS,
        )
        self.hand = ScriptedHand(leader, self.leader_emu, self.emulated, seed=self.s.seed)
        return self.hand

    @property
    def settings(self) -> dict:
        """Stored with every episode and checked when a recording is resumed."""
        return {"leader": self.s.leader, "emulated": self.s.emulate}

    # -- between episodes -------------------------------------------------------------------------
    def on_tick(self) -> None:
        if self.emulated is not None:
            self.emulated.tick()

    def _follow(self, robot, teleop, stop) -> None:
        """The follower follows the leader, unrecorded, until `stop()`."""
        run_loop(
            robot,
            teleop,
            fps=self.fps,
            max_steps=10**9,
            realtime=self.realtime,
            stop=stop,
            on_step=lambda *a: self.on_tick(),
        )

    def reset(self, i: int, seed: int, robot, teleop, can_redo: bool) -> str:
        """The time before episode `i`: returns "record", "redo" (the last episode) or "quit"."""
        if self.emulated is not None:
            ticks = round(
                (EMULATED_RESET_S if self.s.reset_time is None else self.s.reset_time) * self.fps
            )
            teleop.go_home(ticks)
            self._follow(robot, teleop, lambda: teleop.done)
            self.emulated.reset(seed)
            return "record"
        if self.s.reset_time is not None:
            print(f"reset the scene: episode {i} starts in {self.s.reset_time:g} s", flush=True)
            end = time.monotonic() + self.s.reset_time
            self._follow(robot, teleop, lambda: time.monotonic() >= end)
            return "record"
        redo = f", r + Enter: record episode {i - 1} again" if can_redo else ""
        print(
            f"reset the scene (the follower follows the leader). Enter: record episode {i}"
            f"{redo}, q + Enter: stop",
            flush=True,
        )
        box, lines = {}, self._lines or _Lines()
        self._lines = lines

        def answered() -> bool:
            line = lines.poll()
            if line is None:
                return False
            if line in ("", "q") or (line == "r" and can_redo):
                box["line"] = line
                return True
            print(f"{line!r}? Enter, {'r, ' if can_redo else ''}or q", flush=True)
            return False

        self._follow(robot, teleop, answered)
        return {"": "record", "r": "redo", "q": "quit"}[box["line"]]

    def outcome(self, seed: int) -> dict:
        """This episode's metadata: the sim's check when emulated; on hardware an episode that
        the person kept (did not re-record) is a success."""
        if self.emulated is None:
            return dict(success=True, extra={"success_by": "operator (kept, not re-recorded)"})
        scene = self.emulated.scene
        with self.emulated.lock:
            return dict(
                success=scene.success(),
                seed=seed,
                cube_start_pose=tuple(float(v) for v in scene.cube_start_pose),
                extra={
                    "success_by": "sim check",
                    "box_pose": scene.box_pose().tolist(),
                    "cube_end_pose": scene.cube_pose().tolist(),
                    "phase_starts": self.hand.expert.plan.phase_starts,
                },
            )
