"""Side by side, in one run: the project's JAX ACT and LeRobot's PyTorch ACT at identical shapes.

    bash bench/lerobot_env.sh                                 # once: the LeRobot venv
    .venv/bin/python bench/compare_lerobot.py                 # presets cpu_default,seed; 3 steps
    .venv/bin/python bench/compare_lerobot.py --quick         # tiny shapes, ~2 minutes
    .venv/bin/python bench/compare_lerobot.py --presets cpu_default --steps 5
    .venv/bin/python bench/compare_lerobot.py --presets cpu_default,lerobot_96 --single-thread \
        --rounds 2                                            # least load-sensitive ratio

For each preset and workload (train step at the preset's batch, inference at batch 1) it runs four
fresh processes one after another: the JAX side (`bench/jax_act.py`, this .venv) and LeRobot's side
(`bench/lerobot_act.py`, in the LeRobot venv), so that each peak RSS belongs to one workload and
the two never compete for the CPU. It prints a table (median ms of each, the JAX / torch ratio,
JAX's compile time, peak RSS of each, parameter counts of each) and writes every raw record to
bench/results/compare_lerobot.json, with the machine load (os.getloadavg) around each run: the
CPU here is shared, so read ratios together with the load. Under load, torch's default two
spinning OpenMP threads slow down several-fold while XLA's thread pool barely does; hence
`--single-thread` (one compute thread per library) and `--rounds` (alternate the two sides
several times and keep each side's least disturbed round).

On a GPU machine, `--device gpu --lerobot-python python3` runs both sides on its first CUDA device
(each library's default precision: torch's fp32 matmuls, cuDNN allowed TF32; XLA's default, which
may use TF32) and adds each side's peak device memory; `bench/device_check.sh lerobot` is that run.

Presets (the same architecture on both sides; LeRobot's backbone is always a full ResNet18, so the
JAX side uses backbone_width=1.0):
    seed         LeRobot's ACTConfig defaults (dim 512, 8 heads, FFN 3200, chunk 100, 4 encoder
                 layers, 1 decoder, 4 VAE layers, latent 32) with two 480x640 cameras, batch 8:
                 the model of the seed project. One train step takes ~15-30 s per side on this
                 2-core CPU, so the default is 3 timed steps after 1 warm-up.
    cpu_default  the model, cameras, image size and batch of configs/sim_default.py, read at run
                 time, but with backbone_width forced to 1.0 (that config's narrow ResNet cannot
                 be expressed in LeRobot).
    lerobot_96   LeRobot's default architecture at two 96x128 cameras, batch 32 (the CPU-scale
                 row of the feasibility study).
    quick        a tiny transformer (dim 64) at 2 x 96x128, batch 2 (checks this bench quickly).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))  # run as a script from anywhere
import act_bench_common  # noqa: E402 (beside this script)

DEFAULT_LEROBOT_PY = BENCH / ".venvs" / "lerobot" / "bin" / "python"
RESULTS = BENCH / "results" / "compare_lerobot.json"

LEROBOT_DEFAULTS = {  # LeRobot 0.4.4 ACTConfig defaults, 6-D state/action, two cameras
    "cameras": ["top", "lateral"],
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
}
MODEL_KEYS = [k for k in LEROBOT_DEFAULTS] + ["image_size"]
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def load_config(path: Path):
    """`get_config()` of a project config file (configs import each other as `configs.<name>`)."""
    if not path.is_file():
        raise SystemExit(f"--cpu-config {path}: no such file")
    sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location(f"_bench_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def presets(cpu_config: Path) -> dict[str, dict]:
    """Name -> {"spec": shared shape/architecture spec, "note": str}."""
    out = {
        "seed": {
            "spec": {**LEROBOT_DEFAULTS, "image_size": [480, 640], "batch": 8},
            "note": "LeRobot ACTConfig defaults, 2 x 480x640, batch 8",
        },
        "lerobot_96": {
            "spec": {**LEROBOT_DEFAULTS, "image_size": [96, 128], "batch": 32},
            "note": "LeRobot ACTConfig defaults, 2 x 96x128, batch 32",
        },
        # 96x128, not smaller: XLA:CPU convs are pathologically slow on a layer4 map of 8 pixels
        # or fewer (bench/xla_conv_cliff.py), which would make the smoke test misleading.
        "quick": {
            "spec": {
                **LEROBOT_DEFAULTS,
                "image_size": [96, 128],
                "batch": 2,
                "chunk_size": 10,
                "dim_model": 64,
                "n_heads": 4,
                "dim_feedforward": 128,
                "n_encoder_layers": 1,
                "n_vae_encoder_layers": 1,
            },
            "note": "tiny smoke-test model, 2 x 96x128, batch 2",
        },
    }
    config = load_config(cpu_config)
    model = config.model
    spec = {k: model[k] for k in MODEL_KEYS}
    spec["cameras"] = list(spec["cameras"])
    spec["image_size"] = list(spec["image_size"])
    spec["batch"] = int(config.train.batch_size)
    out["cpu_default"] = {
        "spec": spec,
        "note": f"{cpu_config.name} with backbone_width 1.0 (config has {model.backbone_width})",
    }
    return out


def run_worker(
    python: Path,
    script: str,
    spec: dict,
    mode: str,
    steps: int,
    warmup: int,
    timeout: float,
    cpus: set[int] | None = None,
    single_thread: bool = False,
) -> dict:
    """One fresh worker process; its JSON record or {"error": ...}.

    `cpus` pins it to those CPU ids; `single_thread` gives each library one compute thread
    (torch: OMP/MKL_NUM_THREADS=1; XLA: no Eigen thread pool, one intra-op thread).
    """
    cmd = [
        str(python),
        str(BENCH / script),
        "--mode",
        mode,
        "--spec",
        json.dumps(spec),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ]
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    if single_thread:
        env.update(
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            XLA_FLAGS=(env.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_XLA_FLAGS).strip(),
        )
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=env,
            # Both libraries size their thread pools from the affinity mask at start-up.
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "cmd": cmd}
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}", "cmd": cmd}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {
            "error": f"no JSON on stdout: {proc.stdout[-500:]!r} {proc.stderr[-1000:]!r}",
            "cmd": cmd,
        }


def fmt_ms(rec: dict) -> str:
    return "failed" if "error" in rec else f"{1000 * rec['median_s']:,.1f}"


def fmt_mb(rec: dict, key: str = "peak_rss_mb") -> str:
    return "-" if "error" in rec or rec.get(key) is None else f"{rec[key]:,.0f}"


def table(rows: list[dict]) -> str:
    """Markdown table of the paired results."""
    cols = [
        "preset",
        "workload",
        "JAX ms",
        "torch ms",
        "JAX/torch",
        "JAX compile s",
        "JAX peak RSS MB",
        "torch peak RSS MB",
        "JAX device peak MB",
        "torch device peak MB",
        "params JAX",
        "params torch",
        "load 1-min",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        j, t = r["jax"], r["lerobot"]
        ok = "error" not in j and "error" not in t
        cells = [
            r["preset"],
            r["workload"],
            fmt_ms(j),
            fmt_ms(t),
            f"{j['median_s'] / t['median_s']:.2f}" if ok else "-",
            "-" if "error" in j else f"{j['compile_s']:.1f}",
            fmt_mb(j),
            fmt_mb(t),
            fmt_mb(j, "device_peak_mb"),
            fmt_mb(t, "device_peak_mb"),
            "-" if "error" in j else f"{j['n_params']:,}",
            "-" if "error" in t else f"{t['n_params']:,}",
            f"{max(j['loadavg_after'][0], t['loadavg_after'][0]):.1f}" if ok else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Presets: seed, cpu_default, lerobot_96, quick (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--presets", default="cpu_default,seed", help="comma-separated preset names"
    )
    parser.add_argument("--workloads", default="train,infer", help="train, infer or both")
    parser.add_argument(
        "--steps",
        type=int,
        default=3,
        help="timed train steps per side (median; a seed step is ~15-30 s)",
    )
    parser.add_argument("--infer-steps", type=int, default=10, help="timed batch-1 inferences")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat each JAX/torch pair; the round with the lowest median "
        "counts (on a shared CPU, the least disturbed one)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="preset quick, 10 train steps, 20 inferences, 3 warm-ups",
    )
    parser.add_argument(
        "--cpu-config",
        type=Path,
        default=REPO / "configs" / "sim_default.py",
        help="config file that defines the cpu_default preset",
    )
    parser.add_argument(
        "--lerobot-python",
        type=Path,
        default=DEFAULT_LEROBOT_PY,
        help="python of the LeRobot venv (make it with bench/lerobot_env.sh)",
    )
    parser.add_argument(
        "--cpus",
        default="",
        help="pin both sides to these CPU ids, e.g. '0' (a loaded machine hurts "
        "torch's spinning OpenMP threads far more than JAX's pool: pinning both "
        "to one core gives a ratio that depends less on the load)",
    )
    parser.add_argument(
        "--single-thread",
        action="store_true",
        help="one compute thread per library: on a loaded machine torch's "
        "2 spinning OpenMP threads slow down 3x or more while XLA's pool does not, "
        "so this gives the ratio least distorted by other processes",
    )
    parser.add_argument(
        "--backbone-conv",
        choices=["auto", "xla", "fast"],
        default="auto",
        help="the JAX side's backbone convolution backward (act_jax/resnet.py; same numbers; "
        "auto: what the model picks for the backend and width)",
    )
    parser.add_argument(
        "--backbone-pool",
        choices=["auto", "xla", "fast"],
        default="auto",
        help="the JAX side's max-pool backward (act_jax/fast_pool.py; the same bits)",
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "gpu"],
        default="cpu",
        help="where both sides run: gpu is the first CUDA device (JAX_PLATFORMS=cuda, torch "
        "'cuda'); peak device memory is then reported beside peak RSS",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker process")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    return parser


def _checked(parser: argparse.ArgumentParser, args) -> tuple[dict, list, list, set | None]:
    """(the presets, the chosen preset names, workloads, CPU ids or None), each checked; a bad
    one is the parser's error naming its option. `--quick` sets its steps into `args`."""
    if args.quick:
        # Cheap steps: take more of them, since the first few calls are slow on a loaded CPU.
        args.presets, args.steps, args.infer_steps, args.warmup = "quick", 10, 20, 3
    if not args.lerobot_python.exists() and shutil.which(str(args.lerobot_python)):
        args.lerobot_python = Path(shutil.which(str(args.lerobot_python)))
    if not args.lerobot_python.exists():
        parser.error(
            f"--lerobot-python {args.lerobot_python} does not exist: run "
            "`bash bench/lerobot_env.sh` first"
        )
    known = presets(args.cpu_config)
    names = [p.strip() for p in args.presets.split(",") if p.strip()]
    bad = [p for p in names if p not in known]
    if bad:
        parser.error(f"--presets: unknown {bad}; known: {sorted(known)}")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if not workloads or any(w not in ("train", "infer") for w in workloads):
        parser.error(f"--workloads must be train and/or infer, got {args.workloads!r}")
    try:
        cpus = {int(c) for c in args.cpus.split(",") if c.strip()} or None
    except ValueError:
        parser.error(f"--cpus must be comma-separated CPU ids, got {args.cpus!r}")
    return known, names, workloads, cpus


def _compare(preset: str, workload: str, known: dict, args, cpus, bar) -> dict:
    """One row: `--rounds` alternating JAX and LeRobot workers at the preset's shapes, each
    side's least disturbed round, and the ratios."""
    spec = {**known[preset]["spec"], "device": args.device}
    steps = args.steps if workload == "train" else args.infer_steps
    row = {"preset": preset, "workload": workload, "note": known[preset]["note"], "spec": spec}
    records = {"jax": [], "lerobot": []}
    jax_extra = {
        "backbone_width": 1.0,
        "backbone_conv": args.backbone_conv,
        "backbone_pool": args.backbone_pool,
    }
    sides = (
        ("jax", Path(sys.executable), "jax_act.py", jax_extra),
        ("lerobot", args.lerobot_python, "lerobot_act.py", {}),
    )
    for rnd in range(args.rounds):  # the two sides alternate, so load drifts hit both
        for side, python, script, extra in sides:
            bar.set_postfix_str(f"{preset}/{workload}/{side}/round {rnd + 1}")
            rec = run_worker(
                python,
                script,
                {**spec, **extra},
                workload,
                steps,
                args.warmup,
                args.timeout,
                cpus,
                args.single_thread,
            )
            if "error" in rec:
                tqdm.write(f"[{preset}/{workload}/{side}] {rec['error']}")
            records[side].append(rec)
            bar.update()
    for side, recs in records.items():
        ok = [r for r in recs if "error" not in r]
        # The least disturbed round stands for the side; every round's median is kept.
        row[side] = min(ok, key=lambda r: r["median_s"]) if ok else recs[-1]
        row[f"{side}_round_medians_s"] = [r.get("median_s") for r in recs]
    j, t = row["jax"], row["lerobot"]
    if "error" not in j and "error" not in t:
        row["ratio_jax_over_torch"] = j["median_s"] / t["median_s"]
        row["peak_rss_ratio_jax_over_torch"] = j["peak_rss_mb"] / t["peak_rss_mb"]
        if j.get("device_peak_mb") and t.get("device_peak_mb"):
            row["device_peak_ratio_jax_over_torch"] = j["device_peak_mb"] / t["device_peak_mb"]
        row["params_equal"] = j["n_params"] == t["n_params"]
        if not row["params_equal"]:
            tqdm.write(
                f"[{preset}] parameter counts differ: JAX {j['n_params']:,} vs "
                f"LeRobot {t['n_params']:,}"
            )
    return row


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    known, names, workloads, cpus = _checked(parser, args)
    jobs = [(p, w) for p in names for w in workloads]
    bar = tqdm(total=2 * len(jobs) * args.rounds, desc="compare_lerobot", unit="run")
    rows = [_compare(preset, workload, known, args, cpus, bar) for preset, workload in jobs]
    bar.close()

    print(table(rows))
    print(
        "\nMedian of the timed calls after warm-up (best of --rounds); train = forward + "
        "backward + clip(10) + AdamW, batch as in the preset; infer = one action chunk at "
        "batch 1. Peak RSS is each worker process's own (JAX's includes compilation). Load: "
        "1-min load average after the runs, on a shared machine."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu_count": os.cpu_count(),
        "cpu_model": act_bench_common.cpu_model(),
        "loadavg_end": os.getloadavg(),
        "steps": args.steps,
        "infer_steps": args.infer_steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "single_thread": args.single_thread,
        "device": args.device,
        "backbone_conv": args.backbone_conv,
        "backbone_pool": args.backbone_pool,
        "cpus": sorted(cpus) if cpus else "all",
        "rows": rows,
    }
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")
    failed = [
        f"{r['preset']}/{r['workload']}"
        for r in rows
        if "error" in r["jax"] or "error" in r["lerobot"]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
