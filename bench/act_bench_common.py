"""What `bench/jax_act.py` and `bench/lerobot_act.py` share: the default shapes, the timing
loop and the CLI.

Standard library only: `lerobot_act.py` imports it inside the LeRobot venv, `jax_act.py` inside
the project's. Both scripts sit beside this file, so Python finds it on `sys.path[0]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable

# LeRobot's ACT defaults (4 encoder layers), two 480x640 cameras, batch 8.
SHARED_SPEC = {
    "cameras": ["top", "lateral"],
    "image_size": [480, 640],
    "batch": 8,
    "state_dim": 6,
    "action_dim": 6,
    "chunk_size": 100,
    "dim_model": 512,
    "n_heads": 8,
    "dim_feedforward": 3200,
    "n_encoder_layers": 4,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 4,
    "latent_dim": 32,
    "dropout": 0.1,
    "pre_norm": False,
    "use_vae": True,
    "device": "cpu",  # or "gpu": the first CUDA device (JAX_PLATFORMS=cuda; torch "cuda")
}
DEVICES = ("cpu", "gpu")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model() -> str:
    """The CPU's model name and widest vector extension, from /proc/cpuinfo ("" off Linux).

    Which backward pass is fastest depends on the CPU (bench/step_profile.py: XLA's own conv
    gradient beat act_jax.fast_conv's on an AVX-512 EPYC, the reverse on the host of 2026-12-03's
    figures), so every record says which CPU it ran on.
    """
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return ""
    fields = dict(ln.split(":", 1) for ln in text.splitlines()[::-1] if ":" in ln)
    fields = {k.strip(): v.strip() for k, v in fields.items()}  # the first CPU's, read last
    name, flags = fields.get("model name", ""), fields.get("flags", "").split()
    widest = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
    return f"{name} ({widest})"


def set_xla_threads(threads: int) -> None:
    """XLA:CPU compute threads for this process (0 leaves XLA's default: all cores); call
    before jax is imported."""
    import os

    if not threads:
        return
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    if threads > 1:
        flags = f"intra_op_parallelism_threads={threads}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def timed(fn: Callable[[], object], warmup: int, steps: int) -> tuple[float, list[float]]:
    """Runs `fn` warmup + steps times; returns (first call seconds, the timed calls' seconds)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, times


def main(
    run: Callable[[dict, str, int, int, int], dict],
    default_spec: dict,
    description: str,
    warmup_help: str,
    argv=None,
) -> int:
    """Parses `--mode/--spec/--steps/--warmup/--seed`, runs `run(spec, mode, steps, warmup,
    seed)` and prints its record as one JSON object."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument(
        "--spec",
        default="{}",
        help="JSON object overriding the shape/architecture defaults: " + json.dumps(default_spec),
    )
    parser.add_argument("--steps", type=int, default=3, help="timed calls (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help=warmup_help)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        overrides = json.loads(args.spec)
    except json.JSONDecodeError as e:
        parser.error(f"--spec is not valid JSON: {e}")
    unknown = sorted(set(overrides) - set(default_spec))
    if unknown:
        parser.error(f"--spec has unknown keys {unknown}; known: {sorted(default_spec)}")
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    spec = {**default_spec, **overrides}
    if spec["device"] not in DEVICES:
        parser.error(f"--spec device must be one of {DEVICES}, got {spec['device']!r}")
    record = run(spec, args.mode, args.steps, args.warmup, args.seed)
    json.dump(record, sys.stdout)
    sys.stdout.write("\n")
    return 0
