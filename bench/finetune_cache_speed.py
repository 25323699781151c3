r"""The cached fine-tune path against the masked one: time per step, one-off encode, memory.

    python bench/finetune_cache_speed.py --dataset data/tfds/act_episodes/sim_named_50/1.1.0 \
        --out bench/reference_results/interp/finetune_cache_speed.json

Both paths fine-tune `decoder_mlp` of the CPU default config (`configs/sim_named.py`, random
weights: the speed does not depend on them) on the same dataset, batches and optimiser, each in
its own process so that peak memory is its own. Reported per path: median seconds per step over
`--steps` steps after compilation, the one-off cost (the cached path's encode of every frame),
peak RSS, and the estimated wall time of a 1500-step fine-tune; the load average is recorded
beside them (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def run_one(path: str, dataset: str, steps: int) -> dict:
    import jax
    import numpy as np

    from act_jax import data, normalization, train
    from configs import sim_named
    from interp import finetune_cache as F
    from interp import params as P

    config = sim_named.get_config()
    config.train.frozen = P.freeze_all_but(P.PRESETS["decoder_mlp"])
    m = config.model
    episodes = data.load_episodes(dataset, m.cameras, m.image_size, m.state_dim, m.action_dim)
    stats = normalization.compute([e.state for e in episodes], [e.action for e in episodes])
    sampler = data.ChunkSampler(episodes, stats, m.chunk_size, config.train.batch_size, seed=0)
    state = train.create_train_state(config, jax.random.key(0), sampler.batch(0))
    rng = jax.random.key(1)
    times, once = [], 0.0
    if path == "masked":
        step = jax.jit(lambda s, b, r: train.train_step(s, b, r, 0.0))
        for k in range(steps + 2):
            batch = sampler.batch(k)
            t0 = time.perf_counter()
            state, metrics = step(state, batch, rng)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
    else:
        model = train.make_model(config)
        t0 = time.perf_counter()
        memory, pos = F.encode_all(
            model,
            {"params": state.params, "batch_stats": state.batch_stats},
            sampler,
            progress=False,
        )
        once = time.perf_counter() - t0
        step = jax.jit(F.cached_train_step)
        for k in range(steps + 2):
            frames = sampler.frames_for(k)
            targets = sampler.gather_targets(frames)
            t0 = time.perf_counter()
            state, metrics = step(
                state, memory[frames], pos, targets["actions"], targets["action_is_pad"], rng
            )
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[2:]))  # the first two include compilation
    return {
        "path": path,
        "frames": sampler.num_frames,
        "s_per_step": per_step,
        "one_off_s": once,
        "est_1500_steps_s": once + 1500 * per_step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg": os.getloadavg(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True, help="act_episodes dataset dir (96x128 frames)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per path")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--one", choices=("masked", "cached"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.dataset, args.steps)))
        return 0
    rows = []
    for path in ("masked", "cached"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                path,
                "--dataset",
                args.dataset,
                "--steps",
                str(args.steps),
                "--out",
                "-",
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[1],
            env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])),
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1])
    masked, cached = rows
    doc = {
        "command": "python bench/finetune_cache_speed.py " + " ".join(argv or sys.argv[1:]),
        "config": "configs/sim_named.py, trainable decoder_mlp",
        "paths": rows,
        "step_speedup": masked["s_per_step"] / cached["s_per_step"],
        "fine_tune_1500_speedup": masked["est_1500_steps_s"] / cached["est_1500_steps_s"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(
        f"cached step {doc['step_speedup']:.1f}x faster; a 1500-step fine-tune "
        f"{doc['fine_tune_1500_speedup']:.1f}x faster including the encode; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
