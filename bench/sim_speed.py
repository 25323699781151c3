"""Speed of the simulated arm: one control tick (physics + both cameras) at several sizes.

    .venv/bin/python bench/sim_speed.py            # writes bench/results/sim_speed.json

A tick is `send_action` (16 physics steps of 1/480 s) plus `get_observation` (render top and
lateral, read them back), driven by the scripted expert so the arm and the cube really move.
Medians after warm-up; targets from the issue: < 5 ms at 96x128, < 25 ms at 480x640. Wall
time is what counts; on a shared machine compare it with the process CPU time and the load
average (both in the JSON), or rerun when the machine is quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from hardware.sim import ScriptedExpert, SimRobot  # noqa: E402

TARGETS_MS = {(96, 128): 5.0, (480, 640): 25.0}


def time_ticks(size, ticks: int, warmup: int = 20, supersample: int = 1) -> dict:
    t0 = time.perf_counter()
    cameras = () if size is None else ("top", "lateral")
    robot = SimRobot(image_size=size or (96, 128), cameras=cameras, supersample=supersample)
    with robot:
        setup_s = time.perf_counter() - t0
        expert = ScriptedExpert(robot)
        samples, cpu = [], []
        seed = 0
        while len(samples) < ticks + warmup:
            robot.reset(seed=seed)
            expert.reset()
            seed += 1
            while not expert.done and len(samples) < ticks + warmup:
                action = expert.get_action({})
                t, c = time.perf_counter(), time.process_time()
                robot.send_action(action)
                robot.get_observation()
                samples.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
    ms = 1e3 * np.asarray(samples[warmup:])
    cpu_ms = 1e3 * np.asarray(cpu[warmup:])
    return {
        "image_size": None if size is None else list(size),
        "supersample": supersample if size else None,
        "ticks": ticks,
        "median_ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "max_ms": float(ms.max()),
        # CPU time of the whole process (renderer threads included): steadier than wall time
        # when other jobs share the machine.
        "cpu_median_ms": float(np.median(cpu_ms)),
        "setup_s": setup_s,
    }


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ticks", type=int, default=300, help="timed ticks per size")
    p.add_argument("--out", default="bench/results/sim_speed.json")
    args = p.parse_args(argv)
    results = []
    runs = [
        (None, 1),
        ((48, 64), 1),
        ((96, 128), 1),
        ((96, 128), 2),
        ((240, 320), 1),
        ((480, 640), 1),
    ]
    for size, ss in runs:
        r = time_ticks(size, args.ticks, supersample=ss)
        target = TARGETS_MS.get(size) if ss == 1 else None
        r["target_ms"] = target
        r["meets_target"] = None if target is None else r["median_ms"] < target
        results.append(r)
        label = "physics only" if size is None else f"{size[0]}x{size[1]}"
        label += " (2x AA)" if ss > 1 else ""
        verdict = "" if target is None else f"  (target < {target} ms: "
        verdict += "" if target is None else ("ok)" if r["meets_target"] else "MISSED)")
        print(
            f"{label:>18}: step + render median {r['median_ms']:.2f} ms "
            f"(p10 {r['p10_ms']:.2f}, p90 {r['p90_ms']:.2f}), "
            f"cpu {r['cpu_median_ms']:.2f} ms{verdict}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "platform": platform.platform(),
                    "mujoco_gl": os.environ.get("MUJOCO_GL"),
                    "load_avg": os.getloadavg(),
                },
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
