r"""Which parameters does a fine-tune on new cube places need? Every preset, several seeds, the
same data and steps, one table and one figure.

    python -m interp.finetune_compare --base runs/lookup_named --workdir runs/ft_compare \
        --presets action_head decoder_mlp decoder_cross_attn encoder_mlp --seeds 0 1 2 \
        --replay-old -- --locations held_out --demos 60 --steps 1500 --eval-episodes 24

Each (preset, seed) is one `interp.freeze_finetune` run in `WORKDIR/<preset>_s<seed>/` (the
arguments after `--` go to every run; a finished run is reused, so an interrupted comparison
resumes). The base is evaluated once and its numbers reused by every run (`--reuse-before`).
Decoder and action-head presets train on cached encoder memory (`--cached`, equal to the
masked path with dropout off); the others (the size-matched `encoder_mlp` control) on full
frames. Evaluation starts are jittered, so rollouts are independent outcomes; seeds are the
independent units of the spread.

Writes `compare.json` and `compare.html`: per preset, success at the new and the old places
after fine-tuning (each seed, mean, min-max), the fine-tune loss, and the trainable parameter
count; the figure shows success against fine-tune steps (0: the base).

The verdict (`verdict`), this half of the study's rule for "the decoder MLP is the lookup table",
was fixed on 2026-12-03 before any comparison ran, and is not tuned after. It reads the success
rate at the new places after the fine-tune, one value per seed, for `decoder_mlp`, the head
alone (`action_head`) and the size-matched control (`encoder_mlp`), each with 3 or more seeds:
  - "favours the MLP" if every seed of decoder_mlp beats every seed of both others (its lowest
    rate above their highest): the MLP adds what the head cannot, and an MLP of the same size
    upstream, where there is no lookup of actions, does not;
  - "against the MLP" if decoder_mlp's mean is not above the higher of the others' means;
  - "undecided" otherwise, and "invalid" when the base already solves the new places (success
    at or above 0.9 before) or a preset has fewer than 3 seeds.
Success at the old places is reported beside it (forgetting) but is not part of the rule.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hardware.arguments import int_in
from interp import cli, freeze_finetune
from interp import params as P
from interp.finetune_cache import cache_blocker

DEFAULT_PRESETS = ("action_head", "decoder_mlp", "decoder_cross_attn", "encoder_mlp")


def cacheable(base: Path, presets) -> dict[str, bool]:
    """Per preset, whether its fine-tune of `base` trains on cached encoder memory: what
    `interp.finetune_cache.cache_blocker` (the one authority, which `--cached` also asks)
    says about the base's config and parameters."""
    from act_jax import checkpoints

    variables, config, _, _ = checkpoints.restore_latest(base)
    return {p: cache_blocker(config, P.resolve(p), variables["params"]) is None for p in presets}


def run_all(
    base: Path, workdir: Path, presets, seeds, replay_old: bool, rest: list[str], cached=None
):
    """Runs (or reuses) every (preset, seed) fine-tune; returns {preset: {seed: result}}.
    `cached`: {preset: bool} from `cacheable` (computed here when None)."""
    results: dict[str, dict[int, dict]] = {}
    first: Path | None = None
    cached = cacheable(base, presets) if cached is None else cached
    for preset in presets:
        for seed in seeds:
            run = workdir / f"{preset}_s{seed}"
            out = run / "freeze_finetune.json"
            if not out.exists():
                argv = [
                    "--base",
                    str(base),
                    "--workdir",
                    str(run),
                    "--trainable",
                    preset,
                    "--seed",
                    str(seed),
                    *rest,
                ]
                argv += ["--replay-old"] if replay_old else []
                argv += ["--cached"] if cached[preset] else []
                argv += ["--reuse-before", str(first)] if first else []
                print(f"finetune_compare: {preset}, seed {seed}", flush=True)
                code = freeze_finetune.main(argv)
                if code != 0:
                    raise SystemExit(f"finetune_compare: the run in {run} failed ({code})")
            first = first or out
            results.setdefault(preset, {})[seed] = json.loads(out.read_text())
    return results


def summarize(results: dict) -> dict:
    """Per preset: success after, new and old places, per seed and across seeds."""
    table = {}
    for preset, by_seed in results.items():
        row = {
            "trainable_params": next(iter(by_seed.values()))["trainable_params"],
            "cached": next(iter(by_seed.values())).get("cached", False),
        }
        for which in ("new", "old"):
            rates = [r["after"][which]["success_rate"] for r in by_seed.values()]
            row[which] = {
                "per_seed": dict(zip(map(str, by_seed), rates, strict=True)),
                "mean": float(np.mean(rates)),
                "min": float(np.min(rates)),
                "max": float(np.max(rates)),
            }
        row["finetune_loss_last"] = [
            r["finetune_loss"].get("last", {}).get("loss") for r in by_seed.values()
        ]
        row["wall_time_s"] = [r.get("wall_time_s") for r in by_seed.values()]  # None: older run
        table[preset] = row
    any_run = next(iter(next(iter(results.values())).values()))
    return {
        "before": {w: any_run["before"][w]["success_rate"] for w in ("new", "old")},
        "steps": any_run["steps"],
        "presets": table,
    }


RULE_PRESETS = ("decoder_mlp", "action_head", "encoder_mlp")


def verdict(summary: dict) -> dict:
    """The rule of the module docstring on `summarize`'s output: {"verdict", "why"}."""
    presets = summary["presets"]
    missing = [
        p for p in RULE_PRESETS if len(presets.get(p, {}).get("new", {}).get("per_seed", {})) < 3
    ]
    if missing:
        return {"verdict": "invalid", "why": f"fewer than 3 seeds of {', '.join(missing)}"}
    if summary["before"]["new"] >= 0.9:
        return {"verdict": "invalid", "why": "the base already solves the new places"}
    mlp, others = presets["decoder_mlp"]["new"], [presets[p]["new"] for p in RULE_PRESETS[1:]]
    best_other = max(o["max"] for o in others)
    numbers = (
        f"decoder_mlp {mlp['min']:.2f}-{mlp['max']:.2f} (mean {mlp['mean']:.2f}); "
        + "; ".join(
            f"{p} {presets[p]['new']['min']:.2f}-{presets[p]['new']['max']:.2f} "
            f"(mean {presets[p]['new']['mean']:.2f})"
            for p in RULE_PRESETS[1:]
        )
    )
    if mlp["min"] > best_other:
        return {"verdict": "favours the MLP", "why": numbers}
    if mlp["mean"] <= max(o["mean"] for o in others):
        return {"verdict": "against the MLP", "why": numbers}
    return {"verdict": "undecided", "why": numbers}


def figure(summary: dict) -> bytes:
    """PNG: success at the new and the old places against fine-tune steps, per preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    steps = summary["steps"]
    for ax, which in zip(axes, ("new", "old"), strict=True):
        for preset, row in summary["presets"].items():
            r = row[which]
            ax.errorbar(
                [0, steps],
                [summary["before"][which], r["mean"]],
                yerr=[[0, r["mean"] - r["min"]], [0, r["max"] - r["mean"]]],
                marker="o",
                capsize=3,
                label=preset,
            )
        ax.set_title(f"{which} places")
        ax.set_xlabel("fine-tune steps")
        ax.set_ylim(-0.05, 1.05)
    axes[0].set_ylabel("success (mean, min-max over seeds)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    from interp.overlays import fig_to_png

    return fig_to_png(fig)


def write_page(path: Path, summary: dict, png: bytes, command: str) -> None:
    from interp.page import Page

    page = Page("Which parameters does a fine-tune need?")
    page.paragraph(
        f"Every preset fine-tuned {summary['steps']} steps on the same demos per "
        "seed; success after, at the new places and at the base's own, with the "
        f"base at {100 * summary['before']['new']:.0f}% and "
        f"{100 * summary['before']['old']:.0f}% before."
    )
    rows = []
    for preset, row in summary["presets"].items():
        rows.append(
            [
                preset,
                row["trainable_params"],
                "yes" if row["cached"] else "no",
                f"{row['new']['mean']:.2f} ({row['new']['min']:.2f}-{row['new']['max']:.2f})",
                f"{row['old']['mean']:.2f} ({row['old']['min']:.2f}-{row['old']['max']:.2f})",
                ", ".join("n/a" if v is None else f"{v:.4f}" for v in row["finetune_loss_last"]),
            ]
        )
    page.table(
        [
            "preset",
            "trainable params",
            "cached",
            "new: mean (min-max)",
            "old: mean (min-max)",
            "final loss per seed",
        ],
        rows,
    )
    v = verdict(summary)
    page.verdict(
        f"Do the fine-tunes favour the decoder MLP as the lookup table? {v['verdict']}: "
        f"{v['why']} (success at the new places per seed; the rule was fixed before the runs, "
        "interp.finetune_compare).",
        {"favours the MLP": "supported", "against the MLP": "not-supported"}.get(
            v["verdict"], "partial"
        ),
    )
    page.figure(png, "Success against fine-tune steps (0: the base), min-max over seeds")
    page.command(command)
    page.write(path)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, rest = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    p = cli.parser("interp.finetune_compare", __doc__)
    p.add_argument("--base", required=True, help="training workdir of the base policy")
    p.add_argument("--workdir", required=True, help="one sub-directory per run goes here")
    p.add_argument(
        "--presets",
        nargs="+",
        default=list(DEFAULT_PRESETS),
        help="presets of interp.params.PRESETS (default %(default)s)",
    )
    p.add_argument("--seeds", nargs="+", type=int_in(0), default=[0, 1, 2], help="default 0 1 2")
    p.add_argument(
        "--replay-old",
        action="store_true",
        help="demos at the new and the base's own places (see freeze_finetune)",
    )
    args = p.parse_args(own)
    unknown = [k for k in args.presets if k not in P.PRESETS]
    if unknown:
        p.error(f"--presets: unknown {unknown}; known: {sorted(P.PRESETS)}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error("--seeds: a seed appears twice")
    workdir, base = Path(args.workdir), Path(args.base)
    with cli.expected_errors(p, args, "--base"):
        cached = cacheable(base, args.presets)
    rest += ["--debug"] if args.debug else []
    results = run_all(base, workdir, args.presets, args.seeds, args.replay_old, rest, cached)
    summary = summarize(results)
    command = "python -m interp.finetune_compare " + " ".join(argv)
    doc = {"command": command, "seeds": args.seeds, "replay_old": args.replay_old, **summary}
    doc["verdict"] = verdict(summary)
    (workdir / "compare.json").write_text(json.dumps(doc, indent=2))
    png = figure(summary)
    write_page(workdir / "compare.html", summary, png, command)
    for preset, row in summary["presets"].items():
        print(
            f"{preset:20s} new {row['new']['mean']:.2f} ({row['new']['min']:.2f}-"
            f"{row['new']['max']:.2f})  old {row['old']['mean']:.2f}"
        )
    print(f"verdict: {doc['verdict']['verdict']} ({doc['verdict']['why']})")
    print(f"wrote {workdir / 'compare.json'} and compare.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
