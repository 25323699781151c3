"""Where the cube starts: the start distributions of the experiments.

    uniform    x, y uniform over a rectangle in front of the arm (the default; location_id -1)
    named      a fixed set of K = 5 named locations, ids 0..4 (the original project's dataset
               used 5 cube positions): the corners and the centre of the "named region"
    held_out   new locations, ids 5..10, none of them a named one: four between pairs of named
               locations (interpolation) and two at the region's edges (extrapolation), for
               the memorisation-versus-interpolation experiment
    grid:RxC   R x C locations evenly over the named region, corners included, ids 100.. in
               row-major order (x then y): grid:3x3 (K = 9, 4 x 5 cm apart) and grid:5x5
               (K = 25) cover the same region as the named set with more places

Located specs join with `+`: `named+held_out` draws from the locations of both, each keeping
its id (the fine-tune that replays old places beside new ones records from such a union).

A spec may end in a jitter, `~3mm` or `~3mm,3deg`: each draw then moves the cube uniformly by
up to that much in x and in y (and in yaw) around its location, from the reset seed. Without
jitter a location is one pose, so rollouts from it are replicas of one outcome (the sim and the
policy are deterministic); with it, every seed is an independent start near the location.

All start on the table, flat. The cube's yaw is drawn uniformly from `yaw_range_deg` (0 by
default, so the cube is square to the table as in ACT's scripted tasks); located distributions
use the middle of that range. A pose is (7,): x, y, z (m), quaternion w, x, y, z.
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
# The region the named locations span (their corners): grids cover the same one.
NAMED_REGION_X = (0.16, 0.24)
NAMED_REGION_Y = (-0.07, 0.03)
GRID_FIRST_ID = 100
DISTRIBUTIONS = ("uniform", "named", "held_out", "grid")
SPEC_HELP = (
    "uniform | named | held_out | grid:RxC, located ones joined with +, optionally "
    "with ~MMmm[,DEGdeg] jitter"
)


def grid_locations(rows: int, cols: int) -> tuple[tuple[float, float], ...]:
    """`rows` x `cols` points evenly over the named region, corners included, row-major."""
    xs = np.linspace(*NAMED_REGION_X, rows)
    ys = np.linspace(*NAMED_REGION_Y, cols)
    return tuple((round(float(x), 6), round(float(y), 6)) for x in xs for y in ys)


def distribution_arg(text: str) -> str:
    """argparse `type=` for a cube distribution spec: the spec, or a one-line error."""
    import argparse

    try:
        CubeDistribution.make(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _parse_jitter(text: str, spec: str) -> tuple[float, float]:
    """ "3mm" or "3mm,3deg" -> (metres, degrees)."""
    metres, degrees = 0.0, 0.0
    for part in text.split(","):
        part = part.strip()
        try:
            if part.endswith("mm"):
                metres = float(part[:-2]) / 1000
            elif part.endswith("deg"):
                degrees = float(part[:-3])
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"cube distribution {spec!r}: jitter {part!r} is not like 3mm or 3deg"
            ) from None
    if not (0 <= metres <= 0.02 and 0 <= degrees <= 45):
        raise ValueError(f"cube distribution {spec!r}: jitter must be 0-20 mm and 0-45 deg")
    return metres, degrees


@dataclasses.dataclass(frozen=True)
class CubeDistribution:
    """A cube start distribution (see the module docstring).

    Attributes:
      kind: "uniform", "named", "held_out" or "grid".
      x_range, y_range: the uniform region, metres.
      yaw_range_deg: the cube's yaw is uniform in this range (degrees).
      locations: (x, y) of the locations of a located distribution.
      first_id: location id of locations[0]; ids are consecutive unless `ids` is given.
      ids: the id of every location (a union of specs keeps each part's ids).
      jitter_m, jitter_yaw_deg: half-widths of the uniform offset of a located draw.
      spec: the string it was made from (what recordings and results store).
    """

    kind: str = "uniform"
    x_range: tuple[float, float] = UNIFORM_X
    y_range: tuple[float, float] = UNIFORM_Y
    yaw_range_deg: tuple[float, float] = (0.0, 0.0)
    locations: tuple[tuple[float, float], ...] = ()
    first_id: int = 0
    ids: tuple[int, ...] = ()
    jitter_m: float = 0.0
    jitter_yaw_deg: float = 0.0
    spec: str = ""

    def __post_init__(self):
        if self.kind not in DISTRIBUTIONS:
            raise ValueError(f"cube distribution kind {self.kind!r} is not one of {DISTRIBUTIONS}")
        if self.kind != "uniform" and not self.locations:
            raise ValueError(f"cube distribution {self.kind!r} needs at least one location")
        if self.ids and len(self.ids) != len(self.locations):
            raise ValueError(f"{len(self.ids)} ids for {len(self.locations)} locations")

    @classmethod
    def make(cls, spec: str | CubeDistribution) -> CubeDistribution:
        """A distribution from its spec (see the module docstring) or itself."""
        if isinstance(spec, CubeDistribution):
            return spec
        base, _, jitter = str(spec).partition("~")
        jitter_m, jitter_deg = _parse_jitter(jitter, spec) if jitter else (0.0, 0.0)
        if "+" in base:
            parts = [cls.make(part) for part in base.split("+")]
            if any(not d.num_locations for d in parts):
                raise ValueError(f"cube distribution {spec!r}: only located specs join with +")
            ids = [i for d in parts for i in d.location_ids]
            if len(set(ids)) != len(ids):
                raise ValueError(f"cube distribution {spec!r}: a location appears twice")
            return cls(
                kind=parts[0].kind,
                locations=sum((d.locations for d in parts), ()),
                ids=tuple(ids),
                jitter_m=jitter_m,
                jitter_yaw_deg=jitter_deg,
                spec=spec,
            )
        if base == "uniform":
            if jitter:
                raise ValueError(f"cube distribution {spec!r}: uniform starts take no jitter")
            return cls(spec=spec)
        common = dict(jitter_m=jitter_m, jitter_yaw_deg=jitter_deg, spec=spec)
        if base == "named":
            return cls(kind="named", locations=NAMED_LOCATIONS, first_id=0, **common)
        if base == "held_out":
            return cls(
                kind="held_out",
                locations=HELD_OUT_LOCATIONS,
                first_id=len(NAMED_LOCATIONS),
                **common,
            )
        if base.startswith("grid:"):
            try:
                rows, cols = (int(v) for v in base[5:].split("x"))
            except ValueError:
                rows = cols = 0
            if not (2 <= rows <= 20 and 2 <= cols <= 20):
                raise ValueError(f"cube distribution {spec!r}: expected grid:RxC, 2 <= R, C <= 20")
            return cls(
                kind="grid", locations=grid_locations(rows, cols), first_id=GRID_FIRST_ID, **common
            )
        raise ValueError(f"unknown cube distribution {spec!r}: expected {SPEC_HELP}")

    @property
    def location_ids(self) -> tuple[int, ...]:
        """The id of every location, in order."""
        return self.ids or tuple(range(self.first_id, self.first_id + len(self.locations)))

    @property
    def num_locations(self) -> int:
        """Number of discrete locations (0 for the uniform region)."""
        return len(self.locations)

    def sample(
        self, rng: np.random.Generator, cube_size: float, location: int | None = None
    ) -> tuple[np.ndarray, int]:
        """Draws a start pose. Returns ((7,) pose, location_id).

        Args:
          location: for a located distribution, the index into `locations` (None: drawn at
            random).
        """
        if self.kind == "uniform":
            if location is not None:
                raise ValueError("location= needs a located cube distribution (not uniform)")
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
            loc_id = self.location_ids[location]
            if self.jitter_m or self.jitter_yaw_deg:  # drawn after the location, from one seed
                dx, dy = rng.uniform(-self.jitter_m, self.jitter_m, size=2)
                x, y = x + dx, y + dy
                yaw += np.radians(rng.uniform(-self.jitter_yaw_deg, self.jitter_yaw_deg))
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
