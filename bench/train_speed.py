"""Speed and memory of the trainer's own step and of batch-1 inference, per config.

    .venv/bin/python bench/train_speed.py                                  # sim_default, 10 steps
    .venv/bin/python bench/train_speed.py --configs sim_default,seed --steps 2
    python bench/train_speed.py --configs seed --set model.dtype=bfloat16      # e.g. on a GPU

For each config it runs one fresh process (so each peak RSS belongs to one config) that builds the
state exactly as `act_jax.train.train_and_evaluate` does (jitted init with its sharding, AdamW with
the backbone partition and clipping) and times:

- the train step (`act_jax.train.train_step`, jitted with donation over the data mesh) at the
  config's batch size, on a fixed random batch: the first call (compile + run) and the median of
  `--steps` further calls, each waited for with `block_until_ready`;
- inference: the jitted forward at batch 1 with `train=False` (the policy's call), median of
  `--inference-calls` calls.

Memory: peak RSS of the process (`resource.getrusage(...).ru_maxrss`) and, on accelerators,
the device's `peak_bytes_in_use`. Data loading is not included (it runs on a prefetch thread).
Results go to bench/results/train_speed.json (one record per config, with the load average: the
CPU here is shared, so read timings together with the load).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def apply_overrides(config, overrides: list[str]):
    """`section.field=value` strings (values as Python literals, else strings) onto config."""
    import ast

    for item in overrides:
        path, _, text = item.partition("=")
        *parents, leaf = path.split(".")
        node = config
        for name in parents:
            node = getattr(node, name)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        setattr(node, leaf, value)


def measure(config_name: str, steps: int, inference_calls: int, overrides: list[str]) -> dict:
    """Runs in the child process: builds and times one config."""
    import importlib

    import jax
    import numpy as np

    from act_jax import sharding, train
    from act_jax.model import count_params

    config = importlib.import_module(f"configs.{config_name}").get_config()
    apply_overrides(config, overrides)
    m, b = config.model, config.train.batch_size
    h, w = m.image_size
    rng = np.random.default_rng(0)
    batch = {
        "images": {c: rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8) for c in m.cameras},
        "state": rng.normal(size=(b, m.state_dim)).astype(np.float32),
        "actions": rng.normal(size=(b, m.chunk_size, m.action_dim)).astype(np.float32),
        "action_is_pad": np.zeros((b, m.chunk_size), bool),
    }
    mesh = sharding.make_mesh()
    repl, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    batch = jax.device_put(batch, data_sharding)
    init = jax.jit(lambda r: train.create_train_state(config, r, batch), out_shardings=repl)
    t0 = time.perf_counter()
    state = jax.block_until_ready(init(jax.random.key(0)))
    init_s = time.perf_counter() - t0
    step = jax.jit(
        lambda s, x, r: train.train_step(s, x, r, config.train.kl_weight),
        in_shardings=(repl, data_sharding, repl),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )
    key = jax.random.key(1)
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(step(state, batch, key))
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(step(state, batch, key))
        times.append(time.perf_counter() - t0)

    model = train.make_model(config)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    policy = jax.jit(lambda v, i, s: model.apply(v, i, s, train=False)["actions"])
    one = ({c: batch["images"][c][:1] for c in m.cameras}, batch["state"][:1])
    t0 = time.perf_counter()
    jax.block_until_ready(policy(variables, *one))
    inference_first_s = time.perf_counter() - t0
    latencies = []
    for _ in range(inference_calls):
        t0 = time.perf_counter()
        jax.block_until_ready(policy(variables, *one))
        latencies.append(time.perf_counter() - t0)

    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return {
        "config": config_name,
        "overrides": overrides,
        "device": f"{device.platform}:{device.device_kind}",
        "devices": jax.device_count(),
        "params": count_params(state.params),
        "batch_size": b,
        "image_size": list(m.image_size),
        "cameras": list(m.cameras),
        "loss_after": float(metrics["loss"]),
        "init_s": init_s,
        "train_step_first_call_s": first_s,
        "train_step_ms_median": 1e3 * float(np.median(times)) if times else None,
        "train_step_ms_all": [1e3 * t for t in times],
        "inference_first_call_s": inference_first_s,
        "inference_ms_median": 1e3 * float(np.median(latencies)) if latencies else None,
        "inference_ms_p90": 1e3 * float(np.percentile(latencies, 90)) if latencies else None,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "device_peak_bytes_in_use": stats.get("peak_bytes_in_use"),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--configs",
        default="sim_default",
        help="comma-separated names in configs/ (default %(default)s)",
    )
    p.add_argument("--steps", type=int, default=10, help="timed train steps after the first")
    p.add_argument("--inference-calls", type=int, default=20)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="config override for every config, e.g. --set model.dtype=bfloat16",
    )
    p.add_argument("--out", default=str(ROOT / "bench/results/train_speed.json"))
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: measure one config, print JSON
    args = p.parse_args(argv)

    if args.child:
        result = measure(args.child, args.steps, args.inference_calls, args.set)
        print("RESULT " + json.dumps(result))
        return

    records = []
    for name in args.configs.split(","):
        load_before = os.getloadavg()
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--steps",
                str(args.steps),
                "--inference-calls",
                str(args.inference_calls),
                *[f"--set={o}" for o in args.set],
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=dict(
                os.environ,
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            ),
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"{name}: the measuring process failed:\n{proc.stderr[-4000:]}")
        record = json.loads(lines[-1][len("RESULT ") :])
        record.update(
            load_before=load_before,
            load_after=os.getloadavg(),
            host=platform.node(),
            date=datetime.datetime.now().isoformat(),
        )
        records.append(record)
        print(
            f"{name:12s} {record['device']:>14s}  params {record['params'] / 1e6:6.2f} M  "
            f"batch {record['batch_size']:3d}  train step {record['train_step_ms_median']:9.1f} "
            f"ms (first call {record['train_step_first_call_s']:6.1f} s)  inference "
            f"{record['inference_ms_median']:7.1f} ms  peak RSS {record['peak_rss_gb']:5.2f} GB",
            flush=True,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
