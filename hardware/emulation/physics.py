"""Joint physics behind the servo emulator: what a goal position does to the joint.

The emulator speaks bytes; this module decides how joints move. Everything is in *actual* encoder
ticks (before the servo applies its homing offset), so the emulator owns all register semantics.

- `JointPhysics`: the small interface the emulator needs.
- `FirstOrderServo`: a position servo with a time constant, a speed limit, obstacles that stall a
  joint, a load estimate and a thermal model (heats with load squared, cools towards ambient).
  Always available and fast: the unit tests use it.
- `SimArmPhysics` (in `hardware.emulation.sim_physics`) drives the MuJoCo arm instead.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np


@dataclasses.dataclass(frozen=True)
class JointReading:
    """What the servo's sensors report for one joint.

    Attributes:
        position: actual encoder position, ticks (float; the emulator rounds).
        velocity: ticks per second.
        load: signed fraction of maximum torque, -1..1.
        temperature: degrees Celsius.
    """

    position: float
    velocity: float
    load: float
    temperature: float


class JointPhysics(Protocol):
    """Interface between the servo emulator and whatever moves the joints."""

    n_joints: int

    def set_goal(self, joint: int, ticks: float) -> None:
        """Command joint `joint` towards `ticks` (actual encoder frame)."""

    def set_torque(self, joint: int, enabled: bool) -> None:
        """Torque off makes the joint limp: it no longer tracks its goal."""

    def advance(self, dt: float) -> None:
        """Advance time by `dt` seconds."""

    def read(self, joint: int) -> JointReading:
        """Present sensor values of one joint."""

    def move_by_hand(self, joint: int, ticks: float) -> None:
        """Put a limp joint at `ticks`, as a person moving the arm would (calibration)."""


class FirstOrderServo:
    """Position servos as first-order lags with a speed limit, stalls and heating.

    Args:
        initial: (J,) starting positions in actual ticks.
        tau: tracking time constant, seconds.
        max_speed: ticks per second.
        full_load_error: position error (ticks) at which a stalled joint reports full load.
        heat_rate: degrees per second at full load.
        cool_tau: seconds for the temperature excess to decay by e.
        ambient: degrees Celsius.
    """

    def __init__(
        self,
        initial,
        tau: float = 0.05,
        max_speed: float = 4000.0,
        full_load_error: float = 150.0,
        heat_rate: float = 2.0,
        cool_tau: float = 120.0,
        ambient: float = 28.0,
    ):
        self.pos = np.asarray(initial, np.float64).copy()  # (J,)
        self.n_joints = len(self.pos)
        self.goal = self.pos.copy()
        self.vel = np.zeros(self.n_joints)
        self.torque = np.zeros(self.n_joints, bool)
        self.temp = np.full(self.n_joints, float(ambient))
        self.load = np.zeros(self.n_joints)
        self.obstacles: dict[int, tuple[float, float]] = {}
        self.tau, self.max_speed, self.full_load_error = tau, max_speed, full_load_error
        self.heat_rate, self.cool_tau, self.ambient = heat_rate, cool_tau, ambient

    def set_goal(self, joint: int, ticks: float) -> None:
        self.goal[joint] = float(ticks)

    def set_torque(self, joint: int, enabled: bool) -> None:
        self.torque[joint] = bool(enabled)
        if not enabled:
            self.vel[joint] = 0.0

    def obstruct(self, joint: int, low: float, high: float) -> None:
        """Confine a joint to [low, high] ticks: a goal outside stalls it (load and heat rise)."""
        self.obstacles[joint] = (float(low), float(high))

    def clear_obstacle(self, joint: int) -> None:
        self.obstacles.pop(joint, None)

    def move_by_hand(self, joint: int, ticks: float) -> None:
        if self.torque[joint]:
            raise RuntimeError(f"joint {joint} has torque on; it cannot be moved by hand")
        self.pos[joint] = self.goal[joint] = float(ticks)

    def advance(self, dt: float) -> None:
        # Sub-steps keep the lag stable for large dt (a test may jump time by seconds).
        steps = max(1, int(np.ceil(dt / 0.01)))
        h = dt / steps
        for _ in range(steps):
            err = np.where(self.torque, self.goal - self.pos, 0.0)
            vel = np.clip(err / self.tau, -self.max_speed, self.max_speed)
            new = self.pos + vel * h
            for j, (lo, hi) in self.obstacles.items():
                new[j] = min(max(new[j], lo), hi)
            self.vel = (new - self.pos) / h
            self.pos = new
            # Load: the torque needed to hold the remaining error; a free joint settles to ~0.
            self.load = np.where(
                self.torque, np.clip((self.goal - self.pos) / self.full_load_error, -1, 1), 0.0
            )
            heat = self.heat_rate * self.load**2 - (self.temp - self.ambient) / self.cool_tau
            self.temp = self.temp + heat * h

    def read(self, joint: int) -> JointReading:
        return JointReading(
            float(self.pos[joint]),
            float(self.vel[joint]),
            float(self.load[joint]),
            float(self.temp[joint]),
        )
