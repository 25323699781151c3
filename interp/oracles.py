r"""Oracles for the lookup-or-interpolation question: what pure lookup and pure interpolation
would achieve on a given training set, with physics only and no learning.

    python -m interp.oracles --train named --test held_out~3mm,3deg --starts 4 \
        --out bench/reference_results/interp/oracles_named

A training set is a list of cube start poses (the locations of a spec such as `named` or
`grid:3x3`, or the demos' start poses read from a dataset with `--train-dataset`). For a test
start c, with n the nearest training pose:

    expert        the scripted expert planned for c itself (the ceiling)
    nearest       the expert's plan for n, replayed open loop from c: a perfect lookup table,
                  which acts as it acted at the nearest place it has seen
    interpolate   the plans of the training poses around c blended with barycentric weights
                  (joint-space actions, tick by tick): a perfect interpolator of what it saw

Plans use the nominal phase timing (no jitter) so that every plan has the same length and
blends tick by tick. Interpolation weights come from the smallest triangle of training poses
(among the 8 nearest) that contains c; outside the training poses' hull, from the triangle
that needs the least extrapolation.

Every rollout logs its grasp point g, and t(x), the expert's grasp point for a cube at x,
gives the interpolation coefficient

    alpha = (g - t(n)) . (t(c) - t(n)) / |t(c) - t(n)|^2      (in the table plane)

about 0 for a lookup table and about 1 for an interpolator (or the expert). The oracles
calibrate it: `nearest` must come out near 0 and `interpolate` near 1, or alpha measures
nothing. g here is the commanded grasp point (`Rollout.grasp_target`, the forward kinematics of
the joint command at the tick the gripper command falls below half open), not the measured one
(`Rollout.grasp_point`): a jaw that lands on the cube holds the tool up to a centimetre away
from where it was sent (the nearest-replay oracle from 4 cm gave alpha -0.25 to -0.38 measured,
0.0 commanded, on held_out~3mm,3deg), and alpha should measure the decision, not the collision.

Test starts are independent when the test spec is jittered (`~3mm,3deg`): start i uses reset
seed `seed + i` and location `i % K`. Intervals are Wilson intervals over those starts.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

# Below this distance to the nearest training pose, alpha's denominator is within the noise of
# a grasp (the servos track to about a millimetre): alpha is reported as None there.
MIN_ALPHA_DISTANCE_M = 0.005
ORACLES = ("expert", "nearest", "interpolate")


# -- geometry -------------------------------------------------------------------------------------
def nearest_index(train_xy: np.ndarray, xy: np.ndarray) -> int:
    """Index of the training pose nearest `xy` in the table plane."""
    return int(np.argmin(np.linalg.norm(np.asarray(train_xy) - xy, axis=1)))


def _barycentric(tri: np.ndarray, p: np.ndarray) -> np.ndarray | None:
    a, b, c = tri
    m = np.stack([b - a, c - a], axis=1)
    if abs(np.linalg.det(m)) < 1e-10:
        return None
    u, v = np.linalg.solve(m, p - a)
    return np.array([1 - u - v, u, v])


def interpolation_weights(train_xy: np.ndarray, xy: np.ndarray, k: int = 8):
    """(indices (3,), weights (3,)) over training poses: barycentric coordinates of `xy` in the
    smallest containing triangle of its `k` nearest, or in the triangle needing the least
    extrapolation (the largest most-negative weight) when none contains it."""
    train_xy = np.asarray(train_xy, np.float64)
    if len(train_xy) < 3:
        raise ValueError(f"interpolation needs at least 3 training poses, got {len(train_xy)}")
    near = np.argsort(np.linalg.norm(train_xy - xy, axis=1), kind="stable")[:k]
    best = None  # (inside?, score, indices, weights)
    for idx in itertools.combinations(near, 3):
        tri = train_xy[list(idx)]
        w = _barycentric(tri, xy)
        if w is None:
            continue
        (ux, uy), (vx, vy) = tri[1] - tri[0], tri[2] - tri[0]
        area = 0.5 * abs(ux * vy - uy * vx)
        inside = bool(w.min() >= -1e-9)
        key = (inside, -area if inside else w.min())
        if best is None or key > best[0]:
            best = (key, np.array(idx), w)
    if best is None:
        raise ValueError("the training poses are collinear: no triangle to interpolate in")
    return best[1], best[2]


def alpha(g: np.ndarray, t_c: np.ndarray, t_n: np.ndarray) -> float | None:
    """The interpolation coefficient (module docstring) in the table plane; None when t(c) and
    t(n) are closer than `MIN_ALPHA_DISTANCE_M` (c is as good as a training pose)."""
    g, t_c, t_n = (np.asarray(v, np.float64)[:2] for v in (g, t_c, t_n))
    d = t_c - t_n
    if np.linalg.norm(d) < MIN_ALPHA_DISTANCE_M:
        return None
    return float(np.dot(g - t_n, d) / np.dot(d, d))


# -- plans and oracle policies --------------------------------------------------------------------
def nominal_plan(robot, cube_pose: np.ndarray) -> np.ndarray:
    """(T, 6) the expert's actions for a cube at `cube_pose`, with nominal phase timing."""
    from hardware.sim.expert import plan_pick_and_place

    rng = np.random.default_rng(0)  # unused with timing_jitter=0
    plan = plan_pick_and_place(
        robot, np.asarray(cube_pose, np.float64), robot.box_pose(), rng, timing_jitter=0.0
    )
    return plan.actions


def replay(actions: np.ndarray) -> Callable[[dict], np.ndarray]:
    """An open-loop policy that plays `actions` tick by tick, then holds the last one."""
    t = 0

    def policy(observation: dict) -> np.ndarray:
        nonlocal t
        del observation
        a = actions[min(t, len(actions) - 1)]
        t += 1
        return a.copy()

    return policy


class Oracles:
    """The three oracles (module docstring) for one training set, on one `SimRobot`.

    Plans of the training poses are computed once. `make_policy(name)` returns the
    `make_policy` callable `act_jax.evaluate.run_rollouts` wants: it reads the test start from
    the robot right after its reset.
    """

    def __init__(self, robot, train_poses: np.ndarray):
        self.robot = robot
        self.train_poses = np.asarray(train_poses, np.float64)
        self.train_xy = self.train_poses[:, :2]
        self._plans: dict[int, np.ndarray] = {}

    def plan_of(self, i: int) -> np.ndarray:
        if i not in self._plans:
            self._plans[i] = nominal_plan(self.robot, self.train_poses[i])
        return self._plans[i]

    def actions(self, name: str, cube_pose: np.ndarray) -> np.ndarray:
        xy = np.asarray(cube_pose)[:2]
        if name == "expert":
            return nominal_plan(self.robot, cube_pose)
        if name == "nearest":
            return self.plan_of(nearest_index(self.train_xy, xy))
        if name == "interpolate":
            idx, w = interpolation_weights(self.train_xy, xy)
            return sum(wi * self.plan_of(int(i)) for i, wi in zip(idx, w, strict=True))
        raise ValueError(f"unknown oracle {name!r}: expected one of {ORACLES}")

    def make_policy(self, name: str) -> Callable[[], Callable[[dict], np.ndarray]]:
        if name not in ORACLES:
            raise ValueError(f"unknown oracle {name!r}: expected one of {ORACLES}")
        return lambda: replay(self.actions(name, self.robot.cube_start_pose))


def expert_grasp_points(robot, poses: Sequence[np.ndarray], max_steps: int = 400) -> np.ndarray:
    """(N, 3) t(x): the grasp target of the nominal expert plan run from each pose (NaN where
    it never closes)."""
    from act_jax.evaluate import rollout

    out = np.full((len(poses), 3), np.nan)
    for i, pose in enumerate(poses):
        robot.reset(cube_pose=pose)
        ep = rollout(robot, replay(nominal_plan(robot, pose)), max_steps=max_steps)
        if ep.grasp_target is not None:
            out[i] = ep.grasp_target
    return out


# -- a study over test starts ---------------------------------------------------------------------
def score_rollouts(
    rollouts, train_poses: np.ndarray, t_train: np.ndarray, t_test: np.ndarray
) -> dict:
    """Success with its Wilson interval, and alpha per rollout and its median, for rollouts
    from independent starts; `t_test[i]` is t(c) of rollout i's start."""
    from act_jax.evaluate import wilson_interval

    train_xy = np.asarray(train_poses)[:, :2]
    alphas, dists = [], []
    for r, t_c in zip(rollouts, t_test, strict=True):
        c = np.asarray(r.cube_start_pose)
        n = nearest_index(train_xy, c[:2])
        dists.append(float(np.linalg.norm(c[:2] - train_xy[n])))
        a = None if r.grasp_target is None else alpha(r.grasp_target, t_c, t_train[n])
        alphas.append(a)
    k = sum(r.success for r in rollouts)
    finite = [a for a in alphas if a is not None]
    return {
        "starts": len(rollouts),
        "successes": k,
        "success_rate": k / len(rollouts) if rollouts else float("nan"),
        "ci95": list(wilson_interval(k, len(rollouts))),
        "alpha_median": float(np.median(finite)) if finite else None,
        "alpha_iqr": [float(np.percentile(finite, 25)), float(np.percentile(finite, 75))]
        if finite
        else None,
        "per_start": [
            {
                "seed": r.seed,
                "location_id": r.location_id,
                "success": r.success,
                "cube_xy": [float(v) for v in r.cube_start_pose[:2]],
                "nearest_train_m": d,
                "grasp_point": r.grasp_point,
                "grasp_target": r.grasp_target,
                "alpha": a,
            }
            for r, d, a in zip(rollouts, dists, alphas, strict=True)
        ],
    }


def print_table(results: dict) -> None:
    """One line per policy: success with its interval, and median alpha."""
    for name, r in results.items():
        lo, hi = r["ci95"]
        a = "n/a" if r["alpha_median"] is None else f"{r['alpha_median']:.2f}"
        print(
            f"{name:12s} success {r['successes']}/{r['starts']} (95% CI {100 * lo:.0f}-"
            f"{100 * hi:.0f}%), median alpha {a}"
        )


def train_poses_from(spec: str | None, dataset: str | None) -> tuple[np.ndarray, str]:
    """Distinct training poses from a located distribution spec, or from a dataset's episode
    metadata (the demos' start poses)."""
    from hardware.sim.cube import CubeDistribution
    from hardware.sim.scene import SceneConfig

    if (spec is None) == (dataset is None):
        raise ValueError("give exactly one of --train SPEC and --train-dataset DIR")
    if spec is not None:
        dist = CubeDistribution.make(spec)
        if not dist.num_locations:
            raise ValueError(
                f"--train {spec!r} has no locations: use a located spec or --train-dataset"
            )
        size = SceneConfig().cube_size
        poses = [np.array([x, y, size / 2, 1.0, 0.0, 0.0, 0.0]) for x, y in dist.locations]
        return np.stack(poses), spec
    from act_jax.data import png_source, read_example

    source = png_source(dataset)
    poses = [
        np.asarray(
            read_example(source, i, dataset)["episode_metadata"]["cube_start_pose"], np.float64
        )
        for i in range(len(source))
    ]
    return distinct(np.stack(poses)), str(dataset)


def distinct(poses: np.ndarray) -> np.ndarray:
    """The poses with repeats removed (same x, y to 0.1 mm), in first-seen order: demos at one
    named location are one training pose."""
    _, first = np.unique(np.round(poses[:, :2], 4), axis=0, return_index=True)
    return poses[np.sort(first)]


def run_study(
    policies: dict[str, Callable[[], Callable]],
    robot,
    train_poses: np.ndarray,
    *,
    starts: int,
    seed: int,
    max_steps: int = 400,
    progress: bool = True,
) -> dict:
    """Runs every policy from the same `starts` test starts (seed + i, location i % K) and
    scores them against the expert's grasp points."""
    from act_jax.evaluate import run_rollouts

    locations = list(range(robot.num_locations)) if robot.num_locations else None
    t_train = expert_grasp_points(robot, train_poses, max_steps)
    rollouts = {
        name: run_rollouts(
            make_policy,
            robot,
            episodes=starts,
            seed=seed,
            max_steps=max_steps,
            locations=locations,
            progress=progress,
        )
        for name, make_policy in policies.items()
    }
    if "expert" in rollouts:  # the expert oracle's own grasp targets are t(c)
        t_test = np.array(
            [
                np.nan * np.ones(3) if r.grasp_target is None else r.grasp_target
                for r in rollouts["expert"]
            ]
        )
    else:
        poses = [np.asarray(r.cube_start_pose) for r in next(iter(rollouts.values()))]
        t_test = expert_grasp_points(robot, poses, max_steps)
    return {name: score_rollouts(rs, train_poses, t_train, t_test) for name, rs in rollouts.items()}


def add_start_options(p, *, max_steps: int | None) -> None:
    """--test, --starts, --seed and --max-steps (default `max_steps`; None: the config's), the
    test starts of every study that runs policies from the same starts."""
    from hardware.arguments import int_in
    from hardware.sim.cube import SPEC_HELP, distribution_arg

    p.add_argument(
        "--test",
        required=True,
        type=distribution_arg,
        metavar="SPEC",
        help=f"test starts: {SPEC_HELP}; jitter makes every start independent",
    )
    p.add_argument("--starts", type=int_in(1), default=24, help="test starts (default %(default)s)")
    p.add_argument("--seed", type=int_in(0), default=7000, help="reset seed of start 0")
    p.add_argument(
        "--max-steps", type=int_in(1), default=max_steps, help="ticks before a rollout fails"
    )


def main(argv=None) -> int:
    from hardware.sim.cube import distribution_arg
    from interp import cli

    p = cli.parser("interp.oracles", __doc__)
    p.add_argument(
        "--train",
        type=distribution_arg,
        metavar="SPEC",
        help="training locations as a located spec (named, grid:3x3, ...)",
    )
    p.add_argument(
        "--train-dataset",
        metavar="DIR",
        help="or: an act_episodes dataset whose demos' start poses are the training set",
    )
    add_start_options(p, max_steps=400)
    p.add_argument("--out", required=True, help="directory for oracles.json")
    args = p.parse_args(argv)
    with cli.expected_errors(p, args):
        train, train_name = train_poses_from(args.train, args.train_dataset)
    from hardware.sim import SimRobot

    t0 = time.time()
    with SimRobot(cameras=(), distribution=args.test) as robot:
        oracles = Oracles(robot, train)
        result = run_study(
            {n: oracles.make_policy(n) for n in ORACLES},
            robot,
            train,
            starts=args.starts,
            seed=args.seed,
            max_steps=args.max_steps,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "python -m interp.oracles " + " ".join(argv or sys.argv[1:]),
        "train": train_name,
        "train_poses": len(train),
        "test": args.test,
        "starts": args.starts,
        "seed": args.seed,
        "wall_time_s": round(time.time() - t0, 1),
        "oracles": result,
    }
    (out / "oracles.json").write_text(json.dumps(doc, indent=2))
    print_table(result)
    print(f"wrote {out / 'oracles.json'} in {doc['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
