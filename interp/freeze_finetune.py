r"""Fine-tune only part of a trained policy on new cube locations, and measure what changed.

The original project's test of "the decoder MLP is a lookup table": freeze everything except the
decoder's feed-forward block (and the action head), fine-tune on demos at cube locations the
policy has never seen, and see whether the arm now succeeds there. One command does the whole
experiment and writes the numbers that the original only showed in videos:

    python -m interp.freeze_finetune --base runs/named --trainable decoder_mlp \
        --locations held_out --demos 60 --steps 1500 --workdir runs/ft_decoder_mlp

1. The base policy is evaluated at the new locations (before) and at its own training
   distribution (what it knew).
2. Demos at the new locations are recorded with the sim expert if missing, and the base is
   fine-tuned with only the `--trainable` parameters free (a preset of `interp.params.PRESETS`
   or regexes). The base's normalisation statistics are kept (`config.train.init_from`).
3. The fine-tuned policy is evaluated on both again: did it learn the new locations, and did it
   forget the old ones?
4. Every parameter tensor is compared with the base: the frozen ones must be bit-identical (it is
   checked, not assumed), and the relative change of each trained module is reported.

Writes `<workdir>/freeze_finetune.json` and `<workdir>/freeze_finetune.html`. Compare presets
(`decoder_mlp` vs `decoder_cross_attn` vs `decoder`) by running it once per preset with the same
`--demos`, `--steps` and seeds: a lookup table would need the MLP, an interpolating decoder would
adapt as well through its attention.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import numpy as np

from hardware.arguments import ArgumentParser, int_in, number_in
from hardware.sim.cube import distribution_arg
from interp import params as P

EXIT_USAGE = 2


def build_config(
    base_config,
    *,
    base: Path,
    trainable: tuple[str, ...],
    locations: str,
    demos: int,
    steps: int,
    lr: float,
    seed: int,
    data_root: str = "data",
):
    """The fine-tuning experiment's config: the base's, with data, init and freezing changed."""
    from act_jax.evaluate import path_safe

    config = base_config.copy_and_resolve_references()
    name = path_safe(f"sim_{locations}_{demos}")
    with config.unlocked():
        d, t, e = config.data, config.train, config.eval
        d.dataset_dir = ""
        d.name = name
        d.tfds_data_dir = f"{data_root}/tfds"
        d.episodes_dir = f"{data_root}/episodes/{name}"
        d.record_episodes = demos
        d.record_distribution = locations
        d.record_seed = seed
        t.init_from = str(base)
        t.frozen = P.freeze_all_but(trainable)
        t.num_steps = steps
        t.lr = t.lr_backbone = lr
        t.warmup_steps = min(t.warmup_steps, steps // 10)
        t.seed = seed
        t.checkpoint_every = max(1, steps)
        e.every_steps = 0  # evaluated before and after, on more episodes, by this script
    return config


def jittered(spec: str, jitter: str) -> str:
    """`spec` with `~jitter` added when it is a located distribution without one."""
    from hardware.sim.cube import CubeDistribution

    if not jitter or "~" in spec or not CubeDistribution.make(spec).num_locations:
        return spec
    return f"{spec}~{jitter}"


def reused_before(path: Path, base: Path, ev: dict) -> dict | None:
    """The 'before' block of an earlier result with the same base and evaluation settings."""
    old = json.loads(path.read_text())
    if Path(old["base"]).resolve() != base.resolve() or old.get("eval_settings") != ev:
        return None
    return old["before"]


def finetune_loss(metrics: Path) -> dict:
    """The fine-tune's training loss: first and last logged values, and the mean of the last
    five logs (what the run converged to)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    loss = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    if not loss:
        return {}
    return {
        "first": {"step": loss[0][0], "loss": loss[0][1]},
        "last": {"step": loss[-1][0], "loss": loss[-1][1]},
        "last5_mean": float(np.mean([v for _, v in loss[-5:]])),
    }


def evaluate_both(
    workdir: Path,
    tag: str,
    *,
    locations: str,
    base_distribution: str,
    episodes: int,
    seed: int,
    max_steps: int | None,
) -> dict:
    from act_jax.evaluate import evaluate_checkpoint, path_safe

    out = {}
    for which, dist in (("new", locations), ("old", base_distribution)):
        s = evaluate_checkpoint(
            workdir,
            episodes=episodes,
            seed=seed,
            distribution=dist,
            max_steps=max_steps,
            videos=2,
            progress=False,
            out=workdir / "eval" / path_safe(f"{tag}_{which}_{dist}"),
        )
        out[which] = {
            k: s[k]
            for k in (
                "successes",
                "episodes",
                "success_rate",
                "ci95",
                "distribution",
                "per_location",
            )
            if k in s
        }
        locs = ", ".join(
            f"{loc}: {b['successes']}/{b['episodes']}"
            for loc, b in s.get("per_location", {}).items()
        )
        print(
            f"{tag}: {which} locations ({dist}) {s['successes']}/{s['episodes']}"
            + (f" [{locs}]" if locs else "")
        )
    return out


def _bar_svg(rows: list[tuple[str, float, tuple[float, float]]]) -> str:
    """A horizontal bar chart of success rates with their 95% intervals, as inline SVG."""
    w, bar_h, left = 520, 22, 190
    h = bar_h * len(rows) + 30
    parts = [f'<svg width="{w}" height="{h}" font-family="sans-serif" font-size="12">']
    scale = w - left - 40
    for i, (label, rate, (lo, hi)) in enumerate(rows):
        y = 10 + i * bar_h
        parts += [
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{html.escape(label)}</text>',
            f'<rect x="{left}" y="{y + 3}" width="{rate * scale:.1f}" height="{bar_h - 8}" '
            'fill="#4c78a8"/>',
            f'<line x1="{left + lo * scale:.1f}" x2="{left + hi * scale:.1f}" y1="{y + 11}" '
            f'y2="{y + 11}" stroke="#222"/>',
            f'<text x="{left + rate * scale + 6:.1f}" y="{y + 14}">{100 * rate:.0f}%</text>',
        ]
    parts.append(f'<text x="{left}" y="{h - 4}" fill="#666">success rate, 95% interval</text>')
    return "\n".join(parts + ["</svg>"])


def _loss_sentence(result: dict) -> str:
    loss = result.get("finetune_loss") or {}
    if not loss:
        return ""
    demos = ("new and replayed old" if result.get("replay_old") else "new") + " locations"
    return (
        f"Fine-tune loss on the demos ({html.escape(demos)}): {loss['first']['loss']:.4f} at "
        f"step {loss['first']['step']}, {loss['last']['loss']:.4f} at step "
        f"{loss['last']['step']}."
    )


def write_report(path: Path, result: dict) -> None:
    rows = []
    for tag in ("before", "after"):
        for which in ("new", "old"):
            r = result[tag][which]
            rows.append(
                (f"{tag}, {which} ({r['distribution']})", r["success_rate"], tuple(r["ci95"]))
            )
    per_loc = ""
    for which in ("new", "old"):
        before, after = (result[t][which].get("per_location", {}) for t in ("before", "after"))
        if before:
            cells = "".join(
                f"<tr><td>{html.escape(loc)}</td><td>{b['successes']}/{b['episodes']}</td>"
                f"<td>{after[loc]['successes']}/{after[loc]['episodes']}</td></tr>"
                for loc, b in before.items()
                if loc in after
            )
            dist = result["before"][which]["distribution"]
            per_loc += (
                f"<h3>{which} locations ({html.escape(dist)})"
                f"</h3><table><tr><th>location</th><th>before</th><th>after</th></tr>"
                f"{cells}</table>"
            )
    table = "\n".join(
        f"<tr><td>{html.escape(m['module'])}</td><td>{m['params']:,}</td>"
        f"<td>{m['changed']}/{m['tensors']}</td><td>{m['relative_change']:.2e}</td></tr>"
        for m in result["param_change"]
    )
    path.write_text(f"""<!doctype html><meta charset="utf-8">
<title>freeze_finetune: {html.escape(result["trainable_name"])}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}
td,th{{padding:2px 10px;text-align:right}} td:first-child,th:first-child{{text-align:left}}</style>
<h1>Fine-tuning only <code>{html.escape(result["trainable_name"])}</code></h1>
<p>Base <code>{html.escape(result["base"])}</code> (step {result["base_step"]}), fine-tuned
{result["steps"]} steps on {result["demos"]} demos at the <b>{html.escape(result["locations"])}</b>
locations: {result["trainable_params"]:,} of {result["total_params"]:,} parameters trainable
({100 * result["trainable_params"] / result["total_params"]:.1f}%). Frozen tensors bit-identical:
<b>{result["frozen_unchanged"]}</b>. {_loss_sentence(result)}</p>
{_bar_svg(rows)}
<h2>Success by cube location</h2>
<p>Ids as in <code>hardware/sim/cube.py</code>: held-out 5-8 lie between named locations
(interpolation), 9 and 10 outside their hull (extrapolation).</p>
{per_loc}
<h2>Parameter change by module</h2>
<table><tr><th>module</th><th>params</th><th>tensors changed</th><th>relative change</th></tr>
{table}</table>
<p>Command: <code>{html.escape(result["command"])}</code></p>
""")


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="training workdir of the base policy")
    p.add_argument("--workdir", required=True, help="where the fine-tuned run and reports go")
    p.add_argument(
        "--trainable",
        nargs="+",
        default=["decoder_mlp"],
        help=f"a preset ({', '.join(P.PRESETS)}) or regexes over parameter paths "
        "(default %(default)s)",
    )
    p.add_argument(
        "--locations",
        default="held_out",
        type=distribution_arg,
        metavar="SPEC",
        help="cube start distribution of the new demos and the 'new' evaluation",
    )
    p.add_argument(
        "--replay-old",
        action="store_true",
        help="record the demos at the new and the base's own locations together "
        "(new plus replayed old), not at the new ones only",
    )
    p.add_argument(
        "--cached",
        action="store_true",
        help="train on the frozen encoder's output, computed once per frame "
        "(interp.finetune_cache): for decoder and action-head fine-tunes; equal to "
        "the normal path with dropout off",
    )
    p.add_argument(
        "--demos", type=int_in(1), default=60, help="demos recorded at the new locations"
    )
    p.add_argument("--steps", type=int_in(1), default=1500, help="fine-tuning steps")
    p.add_argument(
        "--lr",
        type=number_in(0, 1, low_open=True),
        default=1e-4,
        help="peak learning rate (cosine decay)",
    )
    p.add_argument("--eval-episodes", type=int_in(1), default=30, help="per evaluation (4 of them)")
    p.add_argument("--seed", type=int_in(0), default=0, help="demo recording and training seed")
    p.add_argument("--eval-seed", type=int_in(0), default=1000)
    p.add_argument(
        "--max-steps",
        type=int_in(1),
        default=None,
        help="ticks before a rollout fails (default: the base config's)",
    )
    p.add_argument("--data-root", default="data", help="episodes/ and tfds/ go under it")
    p.add_argument(
        "--eval-jitter",
        default="3mm,3deg",
        metavar="JITTER",
        help="jitter of the evaluation starts at located distributions, so that "
        "each rollout is an independent outcome ('' for none; default %(default)s)",
    )
    p.add_argument(
        "--reuse-before",
        metavar="JSON",
        default=None,
        help="take the 'before' evaluations from this freeze_finetune.json (same base "
        "and evaluation settings; interp.finetune_compare uses it)",
    )
    args = p.parse_args(argv)

    # ---- Validate everything before any work.
    try:
        trainable = P.resolve(args.trainable[0] if len(args.trainable) == 1 else args.trainable)
    except ValueError as e:
        p.error(f"--trainable: {e}")
    base, workdir = Path(args.base), Path(args.workdir)
    from act_jax import checkpoints

    try:
        base_variables, base_config, base_stats, base_step = checkpoints.restore_latest(base)
    except FileNotFoundError as e:
        p.error(f"--base: {e}")
    if workdir.resolve() == base.resolve():
        p.error("--workdir must differ from --base (the base's checkpoints are the reference)")
    trainable_params = P.count(base_variables["params"], trainable)
    if trainable_params == 0:
        p.error(f"--trainable {args.trainable} matches no parameter of {base}")
    base_distribution = base_config.data.get("record_distribution", "uniform")
    demo_locations = args.locations
    if args.replay_old:
        demo_locations = f"{base_distribution}+{args.locations}"
        try:
            distribution_arg(demo_locations)
        except argparse.ArgumentTypeError as e:
            p.error(
                f"--replay-old: the base's distribution {base_distribution!r} cannot join "
                f"--locations {args.locations!r}: {e}"
            )
    config = build_config(
        base_config,
        base=base,
        trainable=trainable,
        locations=demo_locations,
        demos=args.demos,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        data_root=args.data_root,
    )
    if args.cached:
        from interp.finetune_cache import cache_blocker

        why = cache_blocker(config, trainable, base_variables["params"])
        if why:
            p.error(f"--cached: {why}")
    total_params = P.count(base_variables["params"])
    print(
        f"freeze_finetune: {trainable_params:,} of {total_params:,} "
        f"parameters trainable ({' | '.join(trainable)})"
    )

    # ---- Before, fine-tune, after.
    from act_jax import sim_demos, train

    ev = dict(
        locations=jittered(args.locations, args.eval_jitter),
        base_distribution=jittered(base_distribution, args.eval_jitter),
        episodes=args.eval_episodes,
        seed=args.eval_seed,
        max_steps=args.max_steps,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    before = None
    if args.reuse_before:
        before = reused_before(Path(args.reuse_before), base, ev)
        if before is None:
            p.error(f"--reuse-before {args.reuse_before}: another base or evaluation settings")
    before = before or evaluate_both(base, "before", **ev)
    sim_demos.record_missing_demos(config.data, config.model.image_size)
    if args.cached:
        from interp.finetune_cache import finetune_cached

        tuned_params = finetune_cached(config, base_variables, base_stats, workdir).params
    else:
        tuned_params = train.train_and_evaluate(config, workdir).state.params
    after = evaluate_both(workdir, "after", **ev)

    change = P.compare(base_variables["params"], tuned_params)
    base_flat, tuned_flat = P.flatten(base_variables["params"]), P.flatten(tuned_params)
    moved = [
        k
        for k, v in base_flat.items()
        if not P.matches(k, trainable)
        and not np.array_equal(np.asarray(tuned_flat[k]), np.asarray(v))
    ]
    result = dict(
        base=str(base),
        base_step=int(base_step),
        workdir=str(workdir),
        locations=args.locations,
        demo_locations=demo_locations,
        replay_old=args.replay_old,
        cached=args.cached,
        finetune_loss=finetune_loss(workdir / "metrics.jsonl"),
        base_distribution=base_distribution,
        demos=args.demos,
        steps=args.steps,
        lr=args.lr,
        trainable_name=" ".join(args.trainable),
        trainable=list(trainable),
        trainable_params=trainable_params,
        total_params=total_params,
        frozen_unchanged=not moved,
        frozen_moved=moved,
        before=before,
        after=after,
        eval_settings={k: v for k, v in ev.items()},
        param_change=change,
        command="python -m interp.freeze_finetune "
        + " ".join(sys.argv[1:] if argv is None else argv),
    )
    (workdir / "freeze_finetune.json").write_text(json.dumps(result, indent=2))
    write_report(workdir / "freeze_finetune.html", result)
    print(
        f"new locations: {before['new']['successes']}/{before['new']['episodes']} -> "
        f"{after['new']['successes']}/{after['new']['episodes']}; old: "
        f"{before['old']['successes']}/{before['old']['episodes']} -> "
        f"{after['old']['successes']}/{after['old']['episodes']}; frozen tensors "
        f"{'unchanged' if not moved else f'MOVED: {moved[:3]}'}"
    )
    if result["finetune_loss"]:
        print(
            f"fine-tune loss {result['finetune_loss']['first']['loss']:.4f} -> "
            f"{result['finetune_loss']['last']['loss']:.4f}"
        )
    print(f"report: {workdir / 'freeze_finetune.html'}")
    return 0 if not moved else 1


if __name__ == "__main__":
    sys.exit(main())
