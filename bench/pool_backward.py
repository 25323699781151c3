"""The stem's max-pool, forward and backward: XLA's own gradient against act_jax.fast_pool.

    .venv/bin/python bench/pool_backward.py                   # the three shapes below
    .venv/bin/python bench/pool_backward.py --shapes main_job --reps 9

The max-pool's input is the stem convolution's output: (batch x cameras, H/2, W/2, channels).
Shapes, named after what trains at them:
    main_job     configs/sim_default.py: b32 x 2 cameras at 96x128, width 0.25 (16 channels)
    cpu_default  the same at full width (64 channels): bench/compare_lerobot.py's cpu_default
    seed         LeRobot's ACT: b8 x 2 cameras at 480x640, 64 channels

For each shape and implementation it times, jitted, the forward and the forward with its
backward (`jax.vjp`, a random output gradient), as the median of `--reps` calls, and checks in
the same run that the two gradients are bit-identical. One process, both sides alternating, the
load average before and after and the CPU model beside the numbers. Writes
bench/results/pool_backward.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere
sys.path.insert(0, str(HERE))

import act_bench_common  # noqa: E402

SHAPES = {  # (N, H, W, C) of the max-pool's input
    "main_job": (64, 48, 64, 16),
    "cpu_default": (64, 48, 64, 64),
    "seed": (16, 240, 320, 64),
}


def measure(shape, reps: int) -> dict:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from act_jax.fast_pool import max_pool_3x3s2

    def xla(x):
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    rng = np.random.default_rng(0)
    x = jnp.asarray(np.maximum(rng.normal(size=shape), 0).astype(np.float32))  # after a ReLU
    g = jnp.asarray(rng.normal(size=xla(x).shape).astype(np.float32))
    calls, grads = {}, {}
    for name, pool in (("xla", xla), ("fast", max_pool_3x3s2)):
        fwd = jax.jit(pool)
        both = jax.jit(lambda x, pool=pool: jax.vjp(pool, x)[1](g)[0])
        grads[name] = np.asarray(both(x))
        calls[name] = {
            "forward": lambda f=fwd: jax.block_until_ready(f(x)),
            "forward_backward": lambda f=both: jax.block_until_ready(f(x)),
        }
    times = {(n, k): [] for n in calls for k in calls[n]}
    for _ in range(reps):  # alternate, so load drifts hit both sides
        for (name, kind), got in times.items():
            _, t = act_bench_common.timed(calls[name][kind], 1, 1)
            got.append(t[0])
    row = {"shape": list(shape), "bit_identical": bool(np.array_equal(grads["xla"], grads["fast"]))}
    for (name, kind), t in times.items():
        row[f"{name}_{kind}_ms"] = 1000 * statistics.median(t)
    row["backward_ratio_fast_over_xla"] = (
        row["fast_forward_backward_ms"] / row["xla_forward_backward_ms"]
    )
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    p.add_argument("--reps", type=int, default=5, help="timed calls per side (median)")
    p.add_argument("--out", default=str(HERE / "results" / "pool_backward.json"))
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error("--reps must be >= 1")
    record = {
        "command": "python bench/pool_backward.py " + " ".join(argv or sys.argv[1:]),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": act_bench_common.cpu_model(),
        "cpu_count": os.cpu_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_before": os.getloadavg(),
        "rows": {},
    }
    print(f"{'shape':12s} {'xla fwd':>9s} {'xla f+b':>9s} {'fast fwd':>9s} {'fast f+b':>9s}  ratio")
    for name in args.shapes:
        row = measure(SHAPES[name], args.reps)
        record["rows"][name] = row
        print(
            f"{name:12s} {row['xla_forward_ms']:9.1f} {row['xla_forward_backward_ms']:9.1f} "
            f"{row['fast_forward_ms']:9.1f} {row['fast_forward_backward_ms']:9.1f}  "
            f"{row['backward_ratio_fast_over_xla']:.2f}"
            + ("" if row["bit_identical"] else "  GRADIENTS DIFFER"),
            flush=True,
        )
    record["loadavg_after"] = os.getloadavg()
    record["peak_rss_mb"] = act_bench_common.peak_rss_mb()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"wrote {args.out} (load {record['loadavg_before'][0]:.1f} -> "
        f"{record['loadavg_after'][0]:.1f}, {record['cpu_model']})"
    )
    return 0 if all(r["bit_identical"] for r in record["rows"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
