"""`SimTask`: the pick-and-place trial a simulated world runs, as recorder, evaluation and
deployment see it.

    task.reset(seed=7, location=task.start_location(i))   # arm at rest, cube at its start
    ...                                                     # the control loop drives the arm
    task.success()                                          # cube at rest in the box, released
    task.outcome()                                          # what an episode file stores

`SimRobot` is one (the sim stepped by its own `send_action`); so is
`hardware.emulation.follower.EmulatedFollower`, the same scene behind a servo emulator, where the
arm is a `ServoArm` on a pty and the task is the world around it. Code that needs a trial takes a
`SimTask` argument; nothing asks a robot which attributes it happens to have.
"""

from __future__ import annotations

import abc

import numpy as np


class SimTask(abc.ABC):
    """One cube, one box, a success check, reset by seed and (named) location.

    Attributes:
      cube_start_pose: (7,) x, y, z (m), qw, qx, qy, qz of the cube after the last reset.
      location_id: the named location of the last reset, -1 for a uniform draw.
      scene_hash: identifies the world's geometry and physics, or None where the task does not
        stand for the whole recorded set-up.
    """

    cube_start_pose: np.ndarray
    location_id: int = -1
    scene_hash: str | None = None

    @property
    @abc.abstractmethod
    def num_locations(self) -> int:
        """Named locations of the cube start distribution (0 for a uniform region)."""

    @abc.abstractmethod
    def reset(self, seed: int | None = None, *, location: int | None = None):
        """A new trial: the arm at rest, the cube at the pose `seed` draws (at `location`, an
        index of the named locations, if given)."""

    @abc.abstractmethod
    def success(self) -> bool:
        """The cube rests inside the box and nothing of the arm touches it."""

    @abc.abstractmethod
    def cube_pose(self) -> np.ndarray:
        """(7,) the cube's pose now."""

    @abc.abstractmethod
    def box_pose(self) -> np.ndarray:
        """(7,) the box's centre on the table and its orientation."""

    def start_location(self, episode: int) -> int | None:
        """The location episode `episode` starts at: named locations in turn, None if uniform."""
        n = self.num_locations
        return episode % n if n else None

    def outcome(self) -> dict:
        """The trial as an episode file records it: success, location id, cube start and end
        poses, box pose (plain floats and lists)."""
        return {
            "success": bool(self.success()),
            "location_id": int(self.location_id),
            "cube_start_pose": tuple(float(v) for v in self.cube_start_pose),
            "box_pose": self.box_pose().tolist(),
            "cube_end_pose": self.cube_pose().tolist(),
        }
