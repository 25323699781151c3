"""`SimCamera`: one view of the MuJoCo scene as a `Camera`, for a `ServoArm` driving the
simulated arm through the servo emulator (`python -m hardware.deploy --emulate`).
"""

from __future__ import annotations

import contextlib

import numpy as np

from hardware.cameras.camera import Camera, CameraError


class SimCamera(Camera):
    """One camera of a `SimRobot` scene.

    Args:
      robot: a connected scene with `cameras` (names) and `render(name)`, e.g.
        `hardware.sim.SimRobot` (not imported: cameras sit below the sim).
      name: "top" or "lateral".
      lock: held while rendering, e.g. the servo emulator's lock, so the emulator's thread does
        not step the physics in the middle of a frame.
    """

    def __init__(self, robot, name: str, lock=None):
        if name not in robot.cameras:
            raise CameraError(f"sim camera {name!r}: the scene renders {list(robot.cameras)}")
        self.robot, self.name = robot, name
        self.lock = lock if lock is not None else contextlib.nullcontext()

    def __call__(self) -> np.ndarray:
        with self.lock:
            return self.robot.render(self.name)


def sim_cameras(robot, lock=None) -> dict[str, SimCamera]:
    """{name: SimCamera} for every camera `robot` renders."""
    return {name: SimCamera(robot, name, lock) for name in robot.cameras}
