"""Where the cube starts: the three start distributions of the experiments.

    uniform    x, y uniform over a rectangle in front of the arm (the default; location_id -1)
    named      a fixed set of K = 5 named locations, ids 0..4 (the original project's dataset
               used 5 cube positions)
    held_out   new locations, ids 5..10, none of them a named one: four between pairs of named
               locations (interpolation) and two at the region's edges (extrapolation), for
               the memorisation-versus-interpolation experiment

All start on the table, flat. The cube's yaw is drawn uniformly from `yaw_range_deg` (0 by
default, so the cube is square to the table as in ACT's scripted tasks); named and held-out
locations use the middle of that range. A pose is (7,): x, y, z (m), quaternion w, x, y, z.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Workspace in front of the arm (metres, world frame; the arm's base is at the origin facing +x).
# 12 cm x 16 cm, every point reachable with a vertical grasp and room to spare.
UNIFORM_X = (0.14, 0.26)
UNIFORM_Y = (-0.10, 0.06)

NAMED_LOCATIONS: tuple[tuple[float, float], ...] = (
    (0.20, -0.02),  # 0 centre
    (0.16, -0.07),  # 1 near right
    (0.16, 0.03),  # 2 near left
    (0.24, -0.07),  # 3 far right
    (0.24, 0.03),  # 4 far left
)
HELD_OUT_LOCATIONS: tuple[tuple[float, float], ...] = (
    (0.20, -0.07),  # 5 between 1 and 3
    (0.20, 0.03),  # 6 between 2 and 4
    (0.16, -0.02),  # 7 between 1 and 2
    (0.24, -0.02),  # 8 between 3 and 4
    (0.145, -0.095),  # 9 outside the named hull, near corner
    (0.255, 0.055),  # 10 outside the named hull, far corner
)
DISTRIBUTIONS = ("uniform", "named", "held_out")


@dataclasses.dataclass(frozen=True)
class CubeDistribution:
    """A cube start distribution (see the module docstring).

    Attributes:
      kind: "uniform", "named" or "held_out".
      x_range, y_range: the uniform region, metres.
      yaw_range_deg: the cube's yaw is uniform in this range (degrees).
      locations: (x, y) of the locations of a "named"/"held_out" distribution.
      first_id: location id of locations[0]; ids are consecutive.
    """

    kind: str = "uniform"
    x_range: tuple[float, float] = UNIFORM_X
    y_range: tuple[float, float] = UNIFORM_Y
    yaw_range_deg: tuple[float, float] = (0.0, 0.0)
    locations: tuple[tuple[float, float], ...] = ()
    first_id: int = 0

    def __post_init__(self):
        if self.kind not in DISTRIBUTIONS:
            raise ValueError(f"cube distribution kind {self.kind!r} is not one of {DISTRIBUTIONS}")
        if self.kind != "uniform" and not self.locations:
            raise ValueError(f"cube distribution {self.kind!r} needs at least one location")

    @classmethod
    def make(cls, spec: str | CubeDistribution) -> CubeDistribution:
        """A distribution from its name ("uniform", "named", "held_out") or itself."""
        if isinstance(spec, CubeDistribution):
            return spec
        if spec == "uniform":
            return cls()
        if spec == "named":
            return cls(kind="named", locations=NAMED_LOCATIONS, first_id=0)
        if spec == "held_out":
            return cls(kind="held_out", locations=HELD_OUT_LOCATIONS, first_id=len(NAMED_LOCATIONS))
        raise ValueError(f"unknown cube distribution {spec!r}: expected one of {DISTRIBUTIONS}")

    @property
    def num_locations(self) -> int:
        """Number of discrete locations (0 for the uniform region)."""
        return len(self.locations)

    def sample(
        self, rng: np.random.Generator, cube_size: float, location: int | None = None
    ) -> tuple[np.ndarray, int]:
        """Draws a start pose. Returns ((7,) pose, location_id).

        Args:
          location: for named/held_out, the index into `locations` (None: drawn at random).
        """
        if self.kind == "uniform":
            if location is not None:
                raise ValueError("location= needs a 'named' or 'held_out' cube distribution")
            x = rng.uniform(*self.x_range)
            y = rng.uniform(*self.y_range)
            yaw = np.radians(rng.uniform(*self.yaw_range_deg))
            loc_id = -1
        else:
            if location is None:
                location = int(rng.integers(self.num_locations))
            if not 0 <= location < self.num_locations:
                raise ValueError(
                    f"location {location} out of range for the {self.kind!r} distribution "
                    f"({self.num_locations} locations)"
                )
            x, y = self.locations[location]
            yaw = np.radians(np.mean(self.yaw_range_deg))
            loc_id = self.first_id + location
        pose = np.array([x, y, cube_size / 2, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        return pose, loc_id

    def corners(self, cube_size: float) -> list[np.ndarray]:
        """Extreme start poses (the region's corners and centre, or every location): for
        checks that must hold over the whole distribution."""
        if self.kind == "uniform":
            xs, ys = self.x_range, self.y_range
            pts = [(x, y) for x in xs for y in ys] + [(np.mean(xs), np.mean(ys))]
        else:
            pts = list(self.locations)
        return [np.array([x, y, cube_size / 2, 1.0, 0.0, 0.0, 0.0]) for x, y in pts]
