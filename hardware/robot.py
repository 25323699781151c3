"""The `Robot` interface: what the recorder, the control loop and deployment talk to.

A robot is a context manager (entering connects, leaving disconnects safely, also on error) with
two calls per control tick:

    observation = robot.get_observation()
        {"images": {camera: (H, W, 3) uint8 RGB}, "state": (6,) float32}
    sent = robot.send_action(action)          # (6,) targets in -> (6,) targets actually sent

Units follow LeRobot (`hardware.conventions`): joints in degrees, gripper 0 (closed)..100
(open), in the order of `JOINT_NAMES`. `send_action` clips to the robot's joint ranges (and any
other safety limit it enforces) and returns what it really commanded, which is what a recorder
stores as the action. The simulated arm (`hardware.sim.SimRobot`) and the real arms implement
the same interface and the same action space.
"""

from __future__ import annotations

import abc

import numpy as np

from hardware.conventions import ACTION_DIM, JOINT_NAMES


class Robot(abc.ABC):
    """A robot arm with cameras, in LeRobot units.

    Attributes:
      robot_type: a short name stored with recorded episodes (e.g. "sim_so101", "so101").
      cameras: camera names, in the order the policy sees them.
      fps: the control rate it is meant to run at, in Hz.
    """

    robot_type: str = "unknown"
    cameras: tuple[str, ...] = ()
    fps: int = 30
    joint_names: tuple[str, ...] = JOINT_NAMES

    @abc.abstractmethod
    def connect(self) -> None:
        """Opens the connection (ports, cameras, simulation). Idempotent."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Leaves the robot safe (torque off / at rest) and releases resources. Idempotent."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def get_observation(self) -> dict:
        """{"images": {camera: (H, W, 3) uint8}, "state": (6,) float32} in LeRobot units."""

    @abc.abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Commands (6,) joint targets. Returns the (6,) float32 targets actually sent."""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.disconnect()
        return False


def check_action(action, robot_name: str = "robot") -> np.ndarray:
    """Validates an action vector: returns it as (6,) float64, or raises a clear ValueError."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ValueError(
            f"{robot_name}: action must have shape ({ACTION_DIM},) ordered {JOINT_NAMES}, "
            f"got {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        bad = [JOINT_NAMES[i] for i in np.flatnonzero(~np.isfinite(a))]
        raise ValueError(f"{robot_name}: non-finite action for joint(s) {bad}")
    return a
