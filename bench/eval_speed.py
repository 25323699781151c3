"""Closed-loop evaluation throughput: control ticks per second of sim rollouts with a policy.

    .venv/bin/python bench/eval_speed.py                       # configs/sim_default.py
    .venv/bin/python bench/eval_speed.py --config seed --episodes 2 --ticks 60

Runs `act_jax.evaluate.rollout` episode by episode (as `run_rollouts` does) with the config's
ACT (freshly initialised: speed does not depend on the weights) in the MuJoCo sim at the config's
camera size, for each execution strategy, and reports ticks/s and where a tick's time goes
(render + observation, policy, physics + send), from the control loop's own latency
measurements (each rollout returns its `LoopStats`). The policy is warmed up first, so compile
time is excluded (and reported separately). Peak RSS is reported too.
Results: bench/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="sim_default", help="configs/<name>.py")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--ticks", type=int, default=200, help="ticks per episode")
    p.add_argument("--executions", default="ensemble:0.01,receding:10,open_loop")
    p.add_argument("--out", default=str(ROOT / "bench/results/eval_speed.json"))
    args = p.parse_args(argv)

    import jax
    import numpy as np

    from act_jax.evaluate import rollout
    from act_jax.execution import make_executor
    from act_jax.model import ACT, ACTConfig, init_variables
    from act_jax.normalization import NormStats
    from act_jax.policy import Policy
    from hardware.sim import SimRobot

    config = importlib.import_module(f"configs.{args.config}").get_config()
    model = ACT(ACTConfig.from_config(config.model))
    variables = init_variables(model, jax.random.key(0, impl="rbg"))
    ones, zeros = np.ones(6, np.float32), np.zeros(6, np.float32)
    policy = Policy(model, variables, config, NormStats(zeros, ones * 30, zeros, ones * 30))
    t0 = time.perf_counter()
    policy.warmup()
    compile_s = time.perf_counter() - t0

    records = []
    with SimRobot(
        image_size=tuple(config.model.image_size), cameras=tuple(config.model.cameras)
    ) as robot:
        for spec in args.executions.split(","):
            loop_stats, ticks = [], 0
            t0 = time.perf_counter()
            for i in range(args.episodes):
                robot.reset(seed=1000 + i)  # run_rollouts' default seeds
                ep = rollout(robot, policy.as_controller(make_executor(spec)), max_steps=args.ticks)
                loop_stats.append(ep.stats)
                ticks += ep.ticks
            wall = time.perf_counter() - t0
            parts = {
                k: float(np.mean([s.latency_ms[k]["mean"] for s in loop_stats]))
                for k in ("observation", "policy", "send", "tick")
            }
            records.append(
                {
                    "config": args.config,
                    "execution": spec,
                    "episodes": args.episodes,
                    "ticks": ticks,
                    "ticks_per_s": ticks / wall,
                    "realtime_factor": ticks / wall / 30,
                    "mean_ms": parts,
                    "policy_compile_s": compile_s,
                    "retraces_after_warmup": policy.retraces_after_warmup,
                    "image_size": list(config.model.image_size),
                }
            )
            print(
                f"{args.config:>12} {spec:>16}: {ticks / wall:6.1f} ticks/s "
                f"({ticks / wall / 30:.1f}x real time); per tick: render+obs "
                f"{parts['observation']:.1f} ms, policy {parts['policy']:.1f} ms, "
                f"physics+send {parts['send']:.1f} ms"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for r in records:
        r.update(peak_rss_gb=peak, load=os.getloadavg(), device=str(jax.devices()[0]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(records, indent=1))
    print(f"peak RSS {peak:.2f} GB; wrote {args.out}")


if __name__ == "__main__":
    main()
