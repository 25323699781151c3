"""Leader -> follower teleoperation for `python -m hardware.record --teleop leader`.

A person moves a leader arm (`LeaderArm`: torque off, positions read); the follower (`ServoArm`)
goes where the leader is, through its `SafetyGuard`; the recorder stores the follower's
positions as the state, the targets sent as the action and the cameras' frames. This module
holds what is particular to that set-up:

- `TeleopSettings`: the checked arguments (checked before any port or camera opens by
  `hardware.record.check_args`).
- `TeleopRig`: what every rig does: a context manager that opens what the arms need, builds the
  follower and the leader, and gives the recorder its `Mode` (how episodes run, what happens
  between them, who says whether one succeeded). `python -m hardware.record` picks one of two:
- `HardwareRig`: the cameras and two real buses. Between episodes the follower keeps following
  the leader, unrecorded, while the person puts the arm back and resets the scene, until Enter
  (record the next episode), `r` + Enter (re-record the last one) or `q` + Enter (stop); or,
  with `--reset-time S`, for S seconds. An episode the person keeps counts as a success.
- `EmulatedRig` (`--emulate`, `hardware.recording.emulated_rig`): the follower is the MuJoCo
  scene behind the servo emulator, the leader a second emulated arm moved by a scripted hand.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import select
import sys
import time

from hardware.arms import LeaderArm, ServoArm
from hardware.arms.calibration import ArmCalibration
from hardware.arms.servo_arm import park_at_start
from hardware.cameras import close_cameras, open_cameras
from hardware.control_loop import run_loop
from hardware.conventions import FPS
from hardware.recording.recorder import Mode
from hardware.teleop import Teleoperator

# The leader that goes with each follower (an SO-101 leader is an SO-101 with other gearing).
LEADER_PROFILE = {"so101": "so101", "so100": "so100", "koch": "koch_leader"}


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


class TeleopRig(abc.ABC):
    """Opens what a leader -> follower recording needs and runs the time between episodes.

    `with rig:` opens the cameras (or starts the emulators); then `rig.follower()` and
    `rig.leader(robot)` are the robot and the teleoperator (connected by the recorder's `with`),
    and `rig.mode()` is how the recorder runs their episodes. Leaving closes what was opened.
    """

    realtime: bool

    def __init__(self, settings: TeleopSettings):
        self.s = settings
        self.fps = float(FPS)
        self._stack = contextlib.ExitStack()

    @abc.abstractmethod
    def _open(self) -> None:
        """Opens what the arms need, registering how to close it on `self._stack`."""

    def __enter__(self) -> TeleopRig:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self._stack.close()
        return False

    @abc.abstractmethod
    def follower(self) -> ServoArm:
        """The follower arm (not connected)."""

    @abc.abstractmethod
    def leader(self, robot) -> Teleoperator:
        """The leader, as the teleoperator of `robot` (not connected)."""

    @abc.abstractmethod
    def mode(self) -> Mode:
        """How the recorder runs and judges this rig's episodes."""

    @property
    def settings(self) -> dict:
        """Stored with every episode and checked when a recording is resumed."""
        return {"leader": self.s.leader, "emulated": self.s.emulate}

    def on_tick(self) -> None:  # noqa: B027 (an emulated rig's clock moves here)
        """Runs after every tick, recorded or not."""

    def follow(self, robot, teleop, stop) -> None:
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


class HardwareRig(TeleopRig):
    """Two real arms on their buses and the OpenCV cameras; a person between episodes."""

    realtime = True

    def __init__(self, settings: TeleopSettings):
        super().__init__(settings)
        self._cams: dict = {}
        self._lines: _Lines | None = None

    def _open(self) -> None:
        h, w = self.s.image_size
        self._cams = open_cameras(self.s.cameras, w, h, self.fps)
        self._stack.callback(close_cameras, self._cams)

    def follower(self) -> ServoArm:
        return FollowerArm(self.s.robot, self.s.port, self.s.calibration, cameras=self._cams)

    def leader(self, robot) -> Teleoperator:
        return LeaderArm(self.s.leader, self.s.leader_port, self.s.leader_calibration)

    def mode(self) -> Mode:
        return Mode(
            realtime=True,
            between=self.between,
            success_by="operator (kept, not re-recorded)",
            settings=self.settings,
        )

    def between(self, i: int, robot, teleop, can_redo: bool) -> str:
        """The time before episode `i`: returns "record", "redo" (the last episode) or "quit"."""
        if self.s.reset_time is not None:
            print(f"reset the scene: episode {i} starts in {self.s.reset_time:g} s", flush=True)
            end = time.monotonic() + self.s.reset_time
            self.follow(robot, teleop, lambda: time.monotonic() >= end)
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

        self.follow(robot, teleop, answered)
        return {"": "record", "r": "redo", "q": "quit"}[box["line"]]
