"""The `Teleoperator` interface: whatever produces the actions of a demonstration.

On hardware it is a person moving a leader arm; in simulation it is the scripted expert
(`hardware.sim.expert.ScriptedExpert`). The recorder treats both alike:

    teleop.reset()                      # a new episode begins (the robot was just reset)
    action = teleop.get_action(obs)     # (6,) joint targets in LeRobot units, every tick
    teleop.done                         # True once the demonstration is over
    teleop.episode_extra()              # what this demonstration adds to its episode's metadata

Like robots, teleoperators are context managers (entering connects, leaving disconnects).
"""

from __future__ import annotations

import abc

import numpy as np


class Teleoperator(abc.ABC):
    """A source of demonstration actions (LeRobot units: degrees, gripper 0..100)."""

    name: str = "teleoperator"

    def connect(self) -> None:  # noqa: B027 (optional hook)
        """Opens the device (no-op for simulated teleoperators)."""

    def disconnect(self) -> None:  # noqa: B027 (optional hook)
        """Releases the device."""

    def reset(self) -> None:  # noqa: B027 (optional hook)
        """Called after the robot is reset, before the first action of an episode."""

    @property
    def done(self) -> bool:
        """Whether the demonstration has ended (a leader arm's operator ends it by hand)."""
        return False

    @property
    def settings(self) -> dict:
        """What shapes its demonstrations: stored with a recording and checked on resume."""
        return {}

    def episode_extra(self) -> dict:
        """Metadata of the demonstration just given (e.g. a plan's phase starts), stored in its
        episode's `extra`; called once the episode has ended."""
        return {}

    @abc.abstractmethod
    def get_action(self, observation: dict) -> np.ndarray:
        """The (6,) action for this tick, given the robot's latest observation."""

    def __call__(self, observation: dict) -> np.ndarray:
        return self.get_action(observation)

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.disconnect()
        return False
