"""`EmulatedRig`: leader -> follower teleoperation with no hardware
(`python -m hardware.record --teleop leader --emulate`).

The follower is the MuJoCo scene behind the servo emulator (`EmulatedFollower`, as in
`hardware.deploy --emulate`), the leader a second emulated arm whose joints a scripted hand
(`ScriptedHand`) moves along the scripted expert's plan. Between episodes the hand brings the
leader (and so the follower) back home, and the recorder resets the cube through the follower's
`SimTask`. The demonstrations are then real pick-and-place demos recorded through pyserial, the
protocol, the buses, both calibrations and the follower's safety layer; the sim's success check
says whether each worked. Emulated time is a virtual clock advanced 1/fps per tick.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hardware.arms import LeaderArm, ServoArm
from hardware.conventions import CAMERA_NAMES, JOINT_NAMES
from hardware.emulation.emulated_arm import default_calibration, emulate_arm
from hardware.emulation.emulator import EMULATED_BUS_OPTIONS
from hardware.emulation.follower import EmulatedFollower
from hardware.recording.recorder import Mode
from hardware.recording.teleop_rig import FollowerArm, TeleopRig, TeleopSettings
from hardware.sim.expert import ScriptedExpert, min_jerk
from hardware.sim.robot import HOME
from hardware.teleop import Teleoperator

EMULATED_RESET_S = 1.0  # the hand's way home between episodes


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

    def episode_extra(self) -> dict:
        return self.expert.episode_extra()

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


class EmulatedRig(TeleopRig):
    """The emulated follower (a `SimTask`) and leader, and the scripted hand that moves it."""

    realtime = False

    def __init__(self, settings: TeleopSettings):
        super().__init__(settings)
        self.follower_world: EmulatedFollower | None = None
        self.leader_emu = None
        self.hand: ScriptedHand | None = None

    def _open(self) -> None:
        s = self.s
        self.follower_world = EmulatedFollower(
            s.robot, s.calibration, image_size=s.image_size, cameras=CAMERA_NAMES, fps=self.fps
        ).start()
        self._stack.callback(self.follower_world.stop)
        lcal = s.leader_calibration or default_calibration(s.leader)
        home = dict(zip(JOINT_NAMES, map(int, lcal.to_ticks(HOME)), strict=True))
        self.leader_emu = emulate_arm(
            s.leader, calibration=lcal, start_ticks=home, clock=self.follower_world.monotonic
        ).start()
        self._stack.callback(self.leader_emu.stop)
        self.s = dataclasses.replace(s, leader_calibration=lcal)

    def follower(self) -> ServoArm:
        return self.follower_world.arm(cls=FollowerArm)

    def leader(self, robot) -> Teleoperator:
        leader = LeaderArm(
            self.s.leader,
            self.leader_emu.port,
            self.s.leader_calibration,
            bus_options=EMULATED_BUS_OPTIONS,
        )
        self.hand = ScriptedHand(leader, self.leader_emu, self.follower_world, seed=self.s.seed)
        return self.hand

    def mode(self) -> Mode:
        return Mode(
            realtime=False,
            task=self.follower_world,
            between=self.between,
            on_tick=self.on_tick,
            success_by="sim check",
            settings=self.settings,
        )

    def on_tick(self) -> None:
        self.follower_world.tick()

    def between(self, i: int, robot, teleop: ScriptedHand, can_redo: bool) -> str:
        """The hand takes the leader (and the follower with it) home; then the next episode."""
        reset_s = EMULATED_RESET_S if self.s.reset_time is None else self.s.reset_time
        teleop.go_home(round(reset_s * self.fps))
        self.follow(robot, teleop, lambda: teleop.done)
        return "record"
