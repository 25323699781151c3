"""XLA:CPU's 3x3 convolution is 20-100x slower on tiny feature maps (8 pixels or fewer).

    .venv/bin/python bench/xla_conv_cliff.py

Found while sizing bench/compare_lerobot.py: a batch-1 ACT forward at 2 x 64x96 images took
~350 ms in JAX against ~15 ms at 2 x 96x128, because ResNet18's layer4 sees a 2x3 map at 64x96
(3x4 at 96x128). This times one 3x3, stride-1, 512->512 conv (what layer4 runs) at a few feature
map sizes, batch 2. Measured here (JAX 0.10.2, 2 cores): 2x2, 2x3, 3x2 and 2x4 maps take
50-110 ms, while 3x3, 3x4, 4x4 and even 2x8 take 0.6-3 ms. Consequence for configs and tests:
avoid image sizes whose layer4 map (ceil(H/32) x ceil(W/32)) has 8 pixels or fewer, e.g. 64x64
and 64x96; 96x128 (3x4) is fine. Related upstream report: openxla/xla#34273.
Writes bench/results/xla_conv_cliff.json.
"""

import json
import os
import statistics
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

SIZES = [(2, 2), (2, 3), (3, 2), (2, 4), (2, 8), (3, 3), (3, 4), (4, 4), (4, 6)]


def time_conv(hw: tuple[int, int], channels: int = 512, batch: int = 2, reps: int = 7) -> float:
    """Median ms of a jitted 3x3 same-padded conv on a (batch, h, w, channels) input."""
    conv = nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)
    x = jnp.ones((batch, *hw, channels), jnp.float32)
    variables = conv.init(jax.random.key(0), x)
    f = jax.jit(conv.apply)
    f(variables, x).block_until_ready()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(variables, x).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    rows = {f"{h}x{w}": time_conv((h, w)) for h, w in SIZES}
    print("3x3 conv 512->512, batch 2, JAX", jax.__version__, "CPU; median ms")
    for k, ms in rows.items():
        print(f"  {k:>5}: {ms:8.2f} ms")
    out = Path(__file__).resolve().parent / "results" / "xla_conv_cliff.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"jax": jax.__version__, "loadavg": os.getloadavg(), "median_ms": rows}, indent=1
        )
    )
    print("wrote", out)


if __name__ == "__main__":
    main()
