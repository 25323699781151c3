"""Deploy through the servo emulator against the plain sim evaluation: same checkpoint, same cubes.

    nice python bench/deploy_emulated.py --checkpoint runs/sim_default --episodes 20 --seed 1000 \
        --out bench/reference_results/deploy_emulated.json
    nice python bench/deploy_emulated.py --checkpoint runs/sim_default --episodes 5 --seed 1000 \
        --clock real --no-evaluate --out bench/reference_results/deploy_emulated_real_clock.json

One process, one warmed-up policy. First `hardware.deploy.deploy_emulated`, what
`python -m hardware.deploy --emulate --episodes N --seed S` runs: pyserial on a pty, the protocol,
`MotorBus`, calibration, the safety guard and the MuJoCo scene behind the emulator. Then, unless
`--no-evaluate`, `act_jax.evaluate.evaluate_checkpoint` on the same seeds (what
`python -m act_jax.evaluate --episodes N --seed S` runs; its results.json goes to a temporary
folder, not into the checkpoint). The JSON holds both, per episode and in total: success, time to
success, and for deploy the ticks, overruns, protective stops and the per-part tick latencies
that `hardware.deploy` prints, with the load average around the run (the CPU here is shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere


def _mean_time(times: list) -> float | None:
    done = [t for t in times if t is not None]
    return float(np.mean(done)) if done else None


def deploy_block(episodes: list) -> dict:
    """Totals, merged tick latencies and one row per deploy episode."""
    from hardware.control_loop import LoopStats

    rows = [
        {
            "seed": e.seed,
            "success": bool(e.success),
            "time_to_success_s": e.time_to_success_s,
            "stop_reason": e.stop_reason,
            "failure": e.failure,
            **dataclasses.asdict(e.stats),
        }
        for e in episodes
    ]
    merged = LoopStats.merge([e.stats for e in episodes])
    return {
        "episodes": len(rows),
        "successes": sum(r["success"] for r in rows),
        "mean_time_to_success_s": _mean_time([r["time_to_success_s"] for r in rows]),
        "overruns": merged.overruns,
        "latency_ms": merged.latency_ms,  # tick-weighted means of the episodes' percentiles
        "tick_p50_ms_range": [
            min(r["latency_ms"]["tick"]["p50"] for r in rows),
            max(r["latency_ms"]["tick"]["p50"] for r in rows),
        ],
        "tick_p99_ms_range": [
            min(r["latency_ms"]["tick"]["p99"] for r in rows),
            max(r["latency_ms"]["tick"]["p99"] for r in rows),
        ],
        "per_episode": rows,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--robot", default="so101")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--clock", choices=["virtual", "real"], default="virtual")
    p.add_argument("--no-evaluate", action="store_true", help="deploy only")
    p.add_argument("--out", type=Path, default=Path("bench/results/deploy_emulated.json"))
    args = p.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from act_jax.evaluate import evaluate_checkpoint
    from hardware.deploy import deploy_emulated, load_policy

    policy = load_policy(args.checkpoint, None)
    execution = policy.config.eval.get("execution", "ensemble:0.01")
    max_steps = policy.config.eval.get("max_steps", 400)
    policy.warmup()
    doc = {
        "command": "python bench/deploy_emulated.py " + " ".join(argv or sys.argv[1:]),
        "checkpoint": args.checkpoint,
        "step": policy.step,
        "robot": args.robot,
        "execution": execution,
        "max_steps": max_steps,
        "clock": args.clock,
        "seeds": [args.seed, args.seed + args.episodes - 1],
        "load_avg_before": os.getloadavg(),
    }
    t0 = time.perf_counter()
    episodes = deploy_emulated(
        policy,
        robot=args.robot,
        execution=execution,
        episodes=args.episodes,
        seed=args.seed,
        max_steps=max_steps,
        clock=args.clock,
    )
    doc["deploy"] = deploy_block(episodes) | {"wall_s": time.perf_counter() - t0}
    doc["load_avg_after_deploy"] = os.getloadavg()
    if not args.no_evaluate:
        with tempfile.TemporaryDirectory() as tmp:
            s = evaluate_checkpoint(
                args.checkpoint,
                episodes=args.episodes,
                seed=args.seed,
                execution=execution,
                videos=0,
                out=tmp,
                progress=False,
            )
        doc["evaluate"] = {
            k: s[k] for k in ("episodes", "successes", "mean_time_to_success_s", "wall_time_s")
        } | {
            "per_episode": [
                {k: r[k] for k in ("seed", "success", "time_to_success_s")} for r in s["rollouts"]
            ]
        }
        doc["load_avg_after_evaluate"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    d = doc["deploy"]
    print(
        f"deploy ({args.clock} clock): {d['successes']}/{d['episodes']}, mean time to success "
        f"{d['mean_time_to_success_s']}, tick p50 {d['tick_p50_ms_range']} ms, p99 "
        f"{d['tick_p99_ms_range']} ms, {d['overruns']} overruns"
    )
    if "evaluate" in doc:
        e = doc["evaluate"]
        print(f"evaluate: {e['successes']}/{e['episodes']}, mean {e['mean_time_to_success_s']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
