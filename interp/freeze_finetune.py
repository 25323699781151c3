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
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from act_jax.config_ranges import get_field
from hardware.arguments import int_in, number_in
from hardware.sim.cube import distribution_arg
from interp import cli
from interp import params as P
from interp.finetune_cache import cache_blocker, finetune_cached
from interp.freeze_finetune_page import write_report

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
    from act_jax.config_ranges import apply_renamed
    from act_jax.evaluate import path_safe

    config = base_config.copy_and_resolve_references()
    # A base trained before the renames: its old names must not win below.
    apply_renamed(config, warn=False)
    # The seed is in the name: each seed records its own demos (independent samples), and a
    # dataset recorded with another seed is never reused under this one's record_seed.
    name = path_safe(f"sim_{locations}_{demos}_s{seed}")
    with config.unlocked():
        d, t, e = config.data, config.train, config.eval
        d.dataset_dir = ""
        d.name = name
        d.tfds_data_dir = f"{data_root}/tfds"
        d.episodes_dir = f"{data_root}/episodes/{name}"
        d.record_episodes = demos
        d.record_locations = locations
        d.record_seed = seed
        t.init_from = str(base)
        t.frozen = P.freeze_all_but(trainable)
        t.num_steps = steps
        t.lr = t.lr_backbone = lr
        t.warmup_steps = min(t.warmup_steps, steps // 10)
        t.seed = seed
        t.checkpoint_every = max(1, steps)
        e.rollout_every = 0  # evaluated before and after, on more episodes, by this script
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


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("interp.freeze_finetune", __doc__)
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
    p.add_argument("--seed", type=int_in(0), default=0, help="demo recording and training seed")
    p.add_argument("--data-root", default="data", help="episodes/ and tfds/ go under it")
    _add_evaluation_options(p)
    return p


def _add_evaluation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-episodes", type=int_in(1), default=30, help="per evaluation (4 of them)")
    p.add_argument("--eval-seed", type=int_in(0), default=1000)
    p.add_argument(
        "--max-steps",
        type=int_in(1),
        default=None,
        help="ticks before a rollout fails (default: the base config's)",
    )
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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The experiment, checked whole before anything is written."""

    base: Path
    workdir: Path
    trainable: tuple[str, ...]
    base_variables: dict
    base_stats: Any
    base_step: int
    base_distribution: str
    demo_locations: str
    config: Any
    eval_settings: dict
    before: dict | None  # reused from --reuse-before


def _plan(p: argparse.ArgumentParser, args) -> _Plan:
    """Validates every argument against the base; one-line errors (exit 2) name the option."""
    from act_jax import checkpoints, train

    with cli.expected_errors(p, args, "--trainable"):
        trainable = P.resolve(args.trainable[0] if len(args.trainable) == 1 else args.trainable)
    base, workdir = Path(args.base), Path(args.workdir)
    with cli.expected_errors(p, args, "--base"):
        base_variables, base_config, base_stats, base_step = checkpoints.restore_latest(base)
    if workdir.resolve() == base.resolve():
        p.error("--workdir must differ from --base (the base's checkpoints are the reference)")
    if P.count(base_variables["params"], trainable) == 0:
        p.error(f"--trainable {args.trainable} matches no parameter of {base}")
    base_distribution = get_field(base_config, "data.record_locations", "uniform")
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
    with cli.expected_errors(p, args):
        train.check_config(config)
    why = args.cached and cache_blocker(config, trainable, base_variables["params"])
    if why:
        p.error(f"--cached: {why}")
    ev = dict(
        locations=jittered(args.locations, args.eval_jitter),
        base_distribution=jittered(base_distribution, args.eval_jitter),
        episodes=args.eval_episodes,
        seed=args.eval_seed,
        max_steps=args.max_steps,
    )
    before = None
    if args.reuse_before:
        with cli.expected_errors(p, args, "--reuse-before"):
            before = reused_before(Path(args.reuse_before), base, ev)
        if before is None:
            p.error(f"--reuse-before {args.reuse_before}: another base or evaluation settings")
    return _Plan(
        base=base,
        workdir=workdir,
        trainable=trainable,
        base_variables=base_variables,
        base_stats=base_stats,
        base_step=int(base_step),
        base_distribution=base_distribution,
        demo_locations=demo_locations,
        config=config,
        eval_settings=ev,
        before=before,
    )


def _run(plan: _Plan, cached: bool) -> tuple[dict, Any, dict]:
    """(before, the fine-tuned params, after): evaluate, record demos, fine-tune, evaluate."""
    from act_jax import prepare_data, train

    plan.workdir.mkdir(parents=True, exist_ok=True)
    before = plan.before or evaluate_both(plan.base, "before", **plan.eval_settings)
    config = plan.config
    prepare_data.record_missing_demos(config.data, config.model.image_size)
    if cached:
        tuned = finetune_cached(config, plan.base_variables, plan.base_stats, plan.workdir).params
    else:
        tuned = train.train_and_evaluate(config, plan.workdir).state.params
    after = evaluate_both(plan.workdir, "after", **plan.eval_settings)
    return before, tuned, after


def _result(plan: _Plan, args, before: dict, tuned_params, after: dict, command: str) -> dict:
    """What freeze_finetune.json holds."""
    base_params = plan.base_variables["params"]
    base_flat, tuned_flat = P.flatten(base_params), P.flatten(tuned_params)
    moved = [
        k
        for k, v in base_flat.items()
        if not P.matches(k, plan.trainable)
        and not np.array_equal(np.asarray(tuned_flat[k]), np.asarray(v))
    ]
    return dict(
        base=str(plan.base),
        base_step=plan.base_step,
        workdir=str(plan.workdir),
        locations=args.locations,
        demo_locations=plan.demo_locations,
        replay_old=args.replay_old,
        cached=args.cached,
        finetune_loss=finetune_loss(plan.workdir / "metrics.jsonl"),
        base_distribution=plan.base_distribution,
        demos=args.demos,
        steps=args.steps,
        lr=args.lr,
        trainable_name=" ".join(args.trainable),
        trainable=list(plan.trainable),
        trainable_params=P.count(base_params, plan.trainable),
        total_params=P.count(base_params),
        frozen_unchanged=not moved,
        frozen_moved=moved,
        before=before,
        after=after,
        eval_settings=dict(plan.eval_settings),
        param_change=P.compare(base_params, tuned_params),
        command=command,
    )


def _print_outcome(result: dict) -> None:
    before, after, moved = result["before"], result["after"], result["frozen_moved"]
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


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    plan = _plan(p, args)  # every check before any work
    base_params = plan.base_variables["params"]
    print(
        f"freeze_finetune: {P.count(base_params, plan.trainable):,} of {P.count(base_params):,} "
        f"parameters trainable ({' | '.join(plan.trainable)})"
    )
    t0 = time.monotonic()
    with cli.expected_errors(p, args):  # a busy workdir, a damaged demo or dataset file
        before, tuned_params, after = _run(plan, args.cached)
    command = "python -m interp.freeze_finetune " + " ".join(sys.argv[1:] if argv is None else argv)
    result = _result(plan, args, before, tuned_params, after, command)
    # Evaluations, demos, training and evaluations again (the 30-minute bound).
    result["wall_time_s"] = round(time.monotonic() - t0, 1)
    (plan.workdir / "freeze_finetune.json").write_text(json.dumps(result, indent=2))
    write_report(plan.workdir / "freeze_finetune.html", result)
    _print_outcome(result)
    print(f"report: {plan.workdir / 'freeze_finetune.html'}")
    return 0 if result["frozen_unchanged"] else 1


if __name__ == "__main__":
    sys.exit(main())
