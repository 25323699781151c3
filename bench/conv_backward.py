"""Each ResNet18 convolution's forward and both gradients: XLA's own against act_jax.fast_conv.

    .venv/bin/python bench/conv_backward.py                       # cpu_default shapes
    .venv/bin/python bench/conv_backward.py --image 96x128 --batch 64 --width 1.0
    .venv/bin/python bench/conv_backward.py --image 480x640 --batch 16   # the seed's 2 x b8

For every distinct convolution of the backbone at the given image size (stem, each stage's
strided and plain 3x3, each 1x1 projection) it times, jitted, on random data: the forward pass,
the input gradient and the kernel gradient as XLA derives them (`jax.vjp` of
`lax.conv_general_dilated`), and the same two gradients from `act_jax.fast_conv.conv2d`. Each
layer's row is multiplied by how many times the backbone runs it, so the totals are one
backbone pass. Medians of --reps runs; the load average is recorded beside the numbers. Writes
bench/results/conv_backward.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from act_bench_common import timed  # noqa: E402 (beside this script)

from act_jax import fast_conv, resnet  # noqa: E402
from hardware.arguments import ArgumentParser, int_in, number_in  # noqa: E402
from hardware.conventions import parse_image_size  # noqa: E402


def backbone_convs(image: tuple[int, int], width: float) -> list[dict]:
    """The distinct convolutions of ResNet18 at an image size, with how often each runs."""
    c = resnet.channels(width)
    h, w = image
    half = lambda v: (v + 1) // 2  # noqa: E731
    rows = [dict(name="stem 7x7/2", hw=(h, w), cin=3, cout=c[0], k=7, s=2, n=1)]
    h, w = half(half(h)), half(half(w))  # stem conv, max-pool
    rows.append(dict(name="layer1 3x3", hw=(h, w), cin=c[0], cout=c[0], k=3, s=1, n=4))
    for stage in (2, 3, 4):
        cin, cout = c[stage - 2], c[stage - 1]
        rows.append(dict(name=f"layer{stage} 3x3/2", hw=(h, w), cin=cin, cout=cout, k=3, s=2, n=1))
        rows.append(dict(name=f"layer{stage} 1x1/2", hw=(h, w), cin=cin, cout=cout, k=1, s=2, n=1))
        h, w = half(h), half(w)
        rows.append(dict(name=f"layer{stage} 3x3", hw=(h, w), cin=cout, cout=cout, k=3, s=1, n=3))
    return rows


def _median_ms(f, *args, reps: int) -> float:
    """Median ms of `reps` calls of a jitted `f` after one warm-up (compile) call."""
    _, times = timed(lambda: jax.block_until_ready(f(*args)), warmup=1, steps=reps)
    return 1000 * statistics.median(times)


def time_layer(row: dict, batch: int, reps: int) -> dict:
    """Median ms of forward, XLA's dx and dk, and fast_conv's dx and dk, for one convolution."""
    rng = np.random.default_rng(0)
    k, s = row["k"], row["s"]
    pad = ((k // 2, k // 2), (k // 2, k // 2))
    x = jnp.asarray(rng.normal(size=(batch, *row["hw"], row["cin"])), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, row["cin"], row["cout"])), jnp.float32)

    def xla(x, kernel):
        dims = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x, kernel, (s, s), pad, dimension_numbers=dims)

    def fast(x, kernel):
        return fast_conv.conv2d(x, kernel, s, pad)

    g = jnp.ones_like(xla(x, kernel))
    out = {"forward": _median_ms(jax.jit(xla), x, kernel, reps=reps)}
    for label, f in (("xla", xla), ("fast", fast)):
        dx = jax.jit(lambda x, kernel, g, f=f: jax.vjp(lambda x: f(x, kernel), x)[1](g)[0])
        dk = jax.jit(lambda x, kernel, g, f=f: jax.vjp(lambda k: f(x, k), kernel)[1](g)[0])
        if row["name"].startswith("stem"):  # the images need no gradient: ACT never asks for it
            out[f"{label}_dx"] = 0.0
        else:
            out[f"{label}_dx"] = _median_ms(dx, x, kernel, g, reps=reps)
        out[f"{label}_dk"] = _median_ms(dk, x, kernel, g, reps=reps)
    return out


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--image", type=parse_image_size, default=(96, 128), help="HxW of each camera image"
    )
    p.add_argument("--batch", type=int_in(1, 4096), default=64, help="images per pass (b x cams)")
    p.add_argument("--width", type=number_in(0.05, 4.0), default=1.0, help="backbone width")
    p.add_argument("--reps", type=int_in(1, 100), default=5)
    args = p.parse_args(argv)
    image = args.image
    load_before = os.getloadavg()
    rows = []
    for row in backbone_convs(image, args.width):
        row = {**row, **time_layer(row, args.batch, args.reps)}
        rows.append(row)
        n = row["n"]
        print(
            f"{row['name']:<14} {row['hw'][0]:>3}x{row['hw'][1]:<3} x{n}  fwd {row['forward']:7.1f}"
            f"  xla dx {row['xla_dx']:7.1f} dk {row['xla_dk']:7.1f}"
            f"  fast dx {row['fast_dx']:7.1f} dk {row['fast_dk']:7.1f} ms",
            flush=True,
        )
    total = {
        key: sum(r[key] * r["n"] for r in rows)
        for key in ("forward", "xla_dx", "xla_dk", "fast_dx", "fast_dk")
    }
    xla_bwd, fast_bwd = total["xla_dx"] + total["xla_dk"], total["fast_dx"] + total["fast_dk"]
    print(
        f"one backbone pass: forward {total['forward']:.0f} ms; backward XLA {xla_bwd:.0f} ms, "
        f"fast_conv {fast_bwd:.0f} ms ({fast_bwd / xla_bwd:.2f}x)"
    )
    doc = {
        "command": "python bench/conv_backward.py " + " ".join(argv or sys.argv[1:]),
        "jax": jax.__version__,
        "image": image,
        "batch": args.batch,
        "width": args.width,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "layers": rows,
        "total_ms": total,
        "backward_ratio_fast_over_xla": fast_bwd / xla_bwd,
    }
    out = Path(__file__).resolve().parent / "results" / "conv_backward.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
