"""How much aiming error the scripted expert's grasp tolerates, for several fixed-jaw clearances.

A trained policy imitates the expert's trajectory with some error. This bench plans each
demonstration from a cube position that is off by Gaussian noise (sigma metres in x and y, the
policy's "aim"), replays it on the real cube, and counts successes. It shows why the expert aims
beside the cube rather than at its centre (`hardware.sim.expert.FIXED_JAW_CLEARANCE`): aimed at
the centre, the SO-101's fixed pad just touches the cube, and a few millimetres of error away
from the arm put the pad on top of it.

    .venv/bin/python bench/expert_tolerance.py                 # bench/results/expert_tolerance.json
    .venv/bin/python bench/expert_tolerance.py --episodes 20 --clearances 0 0.012 --sigmas 0.004

Physics only (no rendering); about 35 ms an episode on this CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hardware.sim import SimRobot
from hardware.sim.expert import FIXED_JAW_CLEARANCE, plan_pick_and_place

SETTLE_TICKS = 20  # the last action is held this long after the plan: the cube comes to rest


def trial(robot: SimRobot, seed: int, clearance: float, sigma: float) -> tuple[bool, list[float]]:
    """One demonstration planned with an aiming error. Returns (success, the error (x, y))."""
    robot.reset(seed=seed)
    rng = np.random.default_rng([seed, int(round(sigma * 1e6))])
    aimed = robot.cube_start_pose.copy()
    error = rng.normal(0.0, sigma, size=2)
    aimed[:2] += error
    plan = plan_pick_and_place(robot, aimed, robot.box_pose(), rng, clearance=clearance)
    for action in plan.actions:
        robot.send_action(action)
    for _ in range(SETTLE_TICKS):
        robot.send_action(plan.actions[-1])
    return bool(robot.success()), error.round(4).tolist()


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--episodes", type=int, default=100, help="per cell (default %(default)s)")
    p.add_argument("--seed", type=int, default=2000, help="seed of the first cube start")
    p.add_argument(
        "--clearances",
        type=float,
        nargs="+",
        default=[0.0, 0.004, 0.008, FIXED_JAW_CLEARANCE],
        help="metres",
    )
    p.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=[0.0, 0.002, 0.004, 0.008],
        help="aiming error, standard deviation in metres per axis",
    )
    p.add_argument("--out", default="bench/results/expert_tolerance.json")
    args = p.parse_args(argv)

    robot = SimRobot(cameras=())
    results = []
    t0 = time.perf_counter()
    with robot:
        cells = [(c, s) for c in args.clearances for s in args.sigmas]
        for clearance, sigma in tqdm(cells, desc="cells", unit="cell"):
            outcomes = [trial(robot, args.seed + i, clearance, sigma) for i in range(args.episodes)]
            ok = sum(s for s, _ in outcomes)
            results.append(
                {
                    "clearance_m": clearance,
                    "sigma_m": sigma,
                    "episodes": args.episodes,
                    "successes": ok,
                    "failed_errors_m": [e for s, e in outcomes if not s],
                }
            )
    print(
        f"expert success with aiming error ({args.episodes} starts a cell, "
        f"{time.perf_counter() - t0:.0f} s)"
    )
    print("clearance \\ sigma " + "".join(f"{1e3 * s:>8.0f}mm" for s in args.sigmas))
    for clearance in args.clearances:
        row = [r for r in results if r["clearance_m"] == clearance]
        print(
            f"{1e3 * clearance:>15.0f}mm "
            + "".join(f"{r['successes']:>7d}/{r['episodes']:<3d}" for r in row)
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seed": args.seed, "cells": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
