"""One train step under each backbone backward (`backbone_conv` x `backbone_pool`), in one process.

    .venv/bin/python bench/backward_impls.py           # cpu_default at widths 1 and 0.25
    .venv/bin/python bench/backward_impls.py --widths 0.25 --rounds 5 --threads 1
    .venv/bin/python bench/backward_impls.py --presets seed --widths 1.0 --rounds 1

The settings change how the backbone is differentiated, never what it computes (act_jax/resnet.py),
and which is fastest depends on the CPU, so this times them against each other where the
answer is wanted. For each width of each preset (bench/compare_lerobot.py's shapes) it compiles
`bench/jax_act.py`'s train step once per combination, then runs `--rounds` rounds in which every
combination takes `--steps` timed steps in turn, so a load drift hits all of them; it reports
each one's median over rounds of its per-round median, with the load average before and after
and the CPU model. Peak RSS is the process's (all combinations together); for one workload's
memory use bench/compare_lerobot.py. Writes bench/results/backward_impls.json.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere
sys.path.insert(0, str(HERE))

import act_bench_common  # noqa: E402

IMPLS = ("xla", "fast")


def measure(spec: dict, rounds: int, steps: int) -> dict:
    import jax
    from jax_act import _train_step, act_config

    from act_jax.model import ACT, init_variables

    combos = list(itertools.product(IMPLS, IMPLS))
    compiled = {}
    for conv, pool in combos:
        s = {**spec, "backbone_conv": conv, "backbone_pool": pool}
        model = ACT(act_config(s))
        v = init_variables(model, jax.random.key(0))
        step, compile_s, _ = _train_step(model, s, v["params"], v["batch_stats"], 0)
        compiled[conv, pool] = (step, compile_s)
    per_round = {c: [] for c in combos}
    for _ in range(rounds):
        for c in combos:
            _, times = act_bench_common.timed(compiled[c][0], 1, steps)
            per_round[c].append(statistics.median(times))
    return {
        f"conv={conv} pool={pool}": {
            "median_s": statistics.median(per_round[conv, pool]),
            "per_round_s": per_round[conv, pool],
            "compile_s": compiled[conv, pool][1],
        }
        for conv, pool in combos
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--presets", default="cpu_default", help="bench/compare_lerobot.py's")
    p.add_argument("--widths", nargs="+", type=float, default=[1.0, 0.25])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="timed steps per combination and round")
    p.add_argument("--threads", type=int, default=0, help="XLA CPU threads (0: all; 1: one)")
    p.add_argument("--out", default=str(HERE / "results" / "backward_impls.json"))
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.threads < 0:
        p.error("--rounds and --steps must be >= 1, --threads >= 0")
    act_bench_common.set_xla_threads(args.threads)
    from compare_lerobot import presets

    known = presets(HERE.parent / "configs" / "sim_default.py")
    names = [n for n in args.presets.split(",") if n]
    if unknown := [n for n in names if n not in known]:
        p.error(f"--presets: unknown {unknown}; known: {sorted(known)}")
    doc = {
        "command": "python bench/backward_impls.py " + " ".join(argv or sys.argv[1:]),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": act_bench_common.cpu_model(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rows": [],
    }
    for name, width in itertools.product(names, args.widths):
        spec = {**known[name]["spec"], "backbone_width": width}
        load_before = os.getloadavg()
        result = measure(spec, args.rounds, args.steps)
        doc["rows"].append(
            {
                "preset": name,
                "width": width,
                "spec": spec,
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "results": result,
            }
        )
        best = min(result, key=lambda k: result[k]["median_s"])
        shown = ", ".join(f"{k} {v['median_s']:.3f} s" for k, v in result.items())
        print(f"{name} width {width}: {shown}; fastest: {best}", flush=True)
    doc["peak_rss_mb"] = act_bench_common.peak_rss_mb()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out} ({doc['cpu_model']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
