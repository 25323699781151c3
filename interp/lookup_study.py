r"""Lookup table or interpolation: ACT beside a lookup baseline and the physics oracles, on the
same independent test starts, and a verdict by a rule fixed before the runs.

    python -m interp.lookup_study --checkpoint runs/named_base --test held_out~3mm,3deg \
        --starts 24 --out bench/reference_results/interp/lookup_named

Policies, each from the same starts (reset seed `seed + i`, location `i % K` of the test spec):

    act          the checkpoint, with its configured chunk execution
    alt          the action lookup table over the checkpoint's training frames
                 (`act_jax.lookup_table`), with the same chunk execution
    expert, nearest, interpolate
                 the oracles of `interp.oracles` over the training demos' start poses

Each rollout's grasp point gives alpha (`interp.oracles.alpha`): about 0 for lookup, about 1
for interpolation. The training poses are the demos' start poses, read from the dataset.

The verdict rule (`verdict`), fixed before any run of this study and not tuned after:
  - only starts whose nearest training pose is farther than the grasp's tolerance
    (`TOLERANCE_M`, 1.5 cm, `bench/expert_tolerance.py`) count: nearer ones succeed under
    either hypothesis. Fewer than `MIN_STARTS` such starts: "undecided (too few starts beyond
    the tolerance)".
  - "lookup" if ACT's median alpha there is below 0.25 and ACT's success rate there is within
    10 points of the nearest-replay oracle's;
  - "interpolation" if ACT's median alpha there is above 0.75 and ACT succeeds on at least half
    of the starts there on which the nearest-replay oracle fails;
  - "partial" otherwise (the numbers say which way it leans).
The oracles check the instrument: `nearest` must have median alpha below 0.25 and `interpolate`
above 0.75, or the verdict is "invalid (alpha does not separate the oracles)".

Whether the decoder MLP is the lookup table is a further question (where the behaviour snaps,
and which parameters a fine-tune needs), not decided here.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from interp import oracles as O

TOLERANCE_M = 0.015
MIN_STARTS = 8
LOOKUP_ALPHA, INTERP_ALPHA = 0.25, 0.75
TRACK_POINTS = 0.10


def _beyond(block: dict) -> list[dict]:
    return [s for s in block["per_start"] if s["nearest_train_m"] > TOLERANCE_M]


def _median_alpha(starts: list[dict]) -> float | None:
    a = [s["alpha"] for s in starts if s["alpha"] is not None]
    return float(np.median(a)) if a else None


def verdict(results: dict) -> dict:
    """The rule of the module docstring, over `results[name]` blocks of
    `interp.oracles.score_rollouts` for "act", "nearest" and "interpolate" on the same starts."""
    act, near, interp = (_beyond(results[k]) for k in ("act", "nearest", "interpolate"))
    n = len(act)
    numbers = {"starts_beyond_tolerance": n, "tolerance_m": TOLERANCE_M}
    if n < MIN_STARTS:
        return {"verdict": "undecided (too few starts beyond the tolerance)", **numbers}
    a_near, a_interp, a_act = _median_alpha(near), _median_alpha(interp), _median_alpha(act)
    rate = {
        k: float(np.mean([s["success"] for s in v]))
        for k, v in (("act", act), ("nearest", near), ("interpolate", interp))
    }
    nearest_fails = [i for i, s in enumerate(near) if not s["success"]]
    rescued = float(np.mean([act[i]["success"] for i in nearest_fails])) if nearest_fails else None
    numbers.update(
        alpha_median={"act": a_act, "nearest": a_near, "interpolate": a_interp},
        success_rate=rate,
        act_success_where_nearest_fails=rescued,
        nearest_failures=len(nearest_fails),
    )
    if a_near is None or a_interp is None or not (a_near < LOOKUP_ALPHA < INTERP_ALPHA < a_interp):
        return {"verdict": "invalid (alpha does not separate the oracles)", **numbers}
    if a_act is None:
        return {"verdict": "undecided (ACT never closed the gripper)", **numbers}
    if a_act < LOOKUP_ALPHA and abs(rate["act"] - rate["nearest"]) <= TRACK_POINTS:
        return {"verdict": "lookup", **numbers}
    if a_act > INTERP_ALPHA and rescued is not None and rescued >= 0.5:
        return {"verdict": "interpolation", **numbers}
    return {"verdict": "partial", **numbers}


def plot(results: dict) -> bytes:
    """PNG: success with intervals per policy, and alpha against the distance to the nearest
    training pose, per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(results)
    rates = [results[k]["success_rate"] for k in names]
    lo = [r - results[k]["ci95"][0] for k, r in zip(names, rates, strict=True)]
    hi = [results[k]["ci95"][1] - r for k, r in zip(names, rates, strict=True)]
    ax1.bar(names, rates, yerr=[lo, hi], capsize=4, color="#88a")
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("success (95% Wilson CI)")
    ax1.set_title("same independent starts")
    for k, marker in zip(names, "os^vD", strict=False):
        pts = [
            (s["nearest_train_m"] * 100, s["alpha"])
            for s in results[k]["per_start"]
            if s["alpha"] is not None
        ]
        if pts:
            x, y = zip(*pts, strict=True)
            ax2.scatter(x, y, label=k, marker=marker, alpha=0.7)
    ax2.axvline(TOLERANCE_M * 100, color="k", lw=0.8, ls=":")
    for y in (0, 1):
        ax2.axhline(y, color="gray", lw=0.5)
    ax2.set_xlabel("distance to the nearest training pose (cm)")
    ax2.set_ylabel("alpha (0 lookup, 1 interpolation)")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    else:
        ax2.text(
            0.5,
            0.5,
            "no start far enough from a demo for alpha",
            ha="center",
            transform=ax2.transAxes,
        )
    fig.tight_layout()
    from interp.overlays import fig_to_png

    return fig_to_png(fig)


VERDICT_STATUS = {"lookup": "supported", "interpolation": "not-supported"}


def add_section(page, doc: dict, png: bytes) -> None:
    """The study's section of an HTML `interp.page.Page`: verdict, table, figure, command."""
    v = doc["verdict"]
    page.section("Lookup table or interpolation", anchor="lookup")
    n = v["starts_beyond_tolerance"]
    numbers = ""
    if "alpha_median" in v:
        a, r = v["alpha_median"], v["success_rate"]
        fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
        numbers = (
            f" On the {n} starts farther than {100 * TOLERANCE_M:.1f} cm from every "
            f"training pose: median alpha {fmt(a['act'])} for ACT ({fmt(a['nearest'])} "
            f"nearest-replay, {fmt(a['interpolate'])} interpolation oracle); success "
            f"{100 * r['act']:.0f}% ACT, {100 * r['nearest']:.0f}% nearest replay, "
            f"{100 * r['interpolate']:.0f}% interpolation."
        )
    page.verdict(
        f"The claim that ACT acts as a lookup table over its demos: {v['verdict']}." + numbers,
        VERDICT_STATUS.get(v["verdict"], "partial"),
    )
    page.paragraph(
        f"{doc['starts']} independent test starts ({doc['test']}, seeds {doc['seed']}-"
        f"{doc['seed'] + doc['starts'] - 1}), the same for every policy; {doc['train_poses']} "
        f"training demos; the lookup table (alt) holds {doc['alt_frames']} training frames. "
        "alpha = 0: the grasp goes where the nearest demo's did; 1: where the expert's would. "
        "The rule was fixed before the runs (interp.lookup_study)."
    )
    rows = []
    for name, r in doc["results"].items():
        beyond = _beyond(r)
        rows.append(
            [
                name,
                f"{r['successes']}/{r['starts']}",
                f"{r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}",
                "" if r["alpha_median"] is None else r["alpha_median"],
                f"{sum(s['success'] for s in beyond)}/{len(beyond)}",
                "" if _median_alpha(beyond) is None else _median_alpha(beyond),
            ]
        )
    page.table(
        [
            "policy",
            "successes",
            "95% interval",
            "median alpha",
            "successes beyond tol.",
            "median alpha beyond tol.",
        ],
        rows,
    )
    page.figure(png, "Success per policy, and alpha against the distance to the nearest demo")
    page.command(doc["command"])


def _parser():
    from act_jax.evaluate import execution_arg
    from interp import cli

    p = cli.parser("interp.lookup_study", __doc__)
    p.add_argument("--checkpoint", required=True, help="training workdir of the policy")
    p.add_argument(
        "--execution",
        default=None,
        type=execution_arg,
        help="chunk execution (default: the config's)",
    )
    O.add_start_options(p, max_steps=None)
    p.add_argument(
        "--dataset",
        default=None,
        help="training dataset (default: the one the checkpoint's config names)",
    )
    p.add_argument("--out", required=True, help="directory for lookup.json, .png and .html")
    return p


def _inputs(p, args):
    """(policy, training poses, dataset) of the study, checked before any rollout."""
    from act_jax.data import dataset_dir_for
    from act_jax.policy import Policy
    from interp import cli

    with cli.expected_errors(p, args, "--checkpoint"):
        policy = Policy.from_checkpoint(args.checkpoint)
    dataset = Path(args.dataset) if args.dataset else dataset_dir_for(policy.config.data)
    if not dataset.exists():
        p.error(f"--dataset: no dataset at {dataset} (give the training dataset's directory)")
    with cli.expected_errors(p, args, "--dataset"):
        train, _ = O.train_poses_from(None, str(dataset))
    if len(train) < 3:
        p.error(
            f"{dataset} has demos from {len(train)} distinct cube poses; the interpolation "
            "oracle needs at least 3"
        )
    return policy, train, dataset


def run(args, policy, train, dataset) -> dict:
    """ACT, the lookup table and the oracles from the same test starts: lookup.json's content."""
    from act_jax.execution import make_executor
    from act_jax.lookup_table import ActionLookupTable
    from hardware.sim import SimRobot

    cfg = policy.config
    execution = args.execution or cfg.eval.get("execution", "ensemble:0.01")
    t0 = time.time()
    alt = ActionLookupTable.from_dataset(dataset, cfg)
    policy.warmup()
    robot = SimRobot(
        image_size=tuple(cfg.model.image_size),
        cameras=tuple(cfg.model.cameras),
        distribution=args.test,
    )
    with robot:
        oracles = O.Oracles(robot, train)
        policies = {
            "act": lambda: policy.as_controller(make_executor(execution)),
            "alt": lambda: alt.as_controller(make_executor(execution)),
            **{n: oracles.make_policy(n) for n in O.ORACLES},
        }
        max_steps = args.max_steps or cfg.eval.get("max_steps", 400)
        results = O.run_study(
            policies, robot, train, starts=args.starts, seed=args.seed, max_steps=max_steps
        )
    return {
        "checkpoint": str(args.checkpoint),
        "step": policy.step,
        "dataset": str(dataset),
        "train_poses": len(train),
        "alt_frames": len(alt),
        "test": args.test,
        "starts": args.starts,
        "seed": args.seed,
        "execution": execution,
        "wall_time_s": round(time.time() - t0, 1),
        "verdict": verdict(results),
        "results": results,
    }


def main(argv=None) -> int:
    from interp import cli
    from interp.page import Page

    p = _parser()
    args = p.parse_args(argv)
    policy, train, dataset = _inputs(p, args)
    with cli.expected_errors(p, args):  # a damaged dataset file
        doc = run(args, policy, train, dataset)
    doc = {"command": "python -m interp.lookup_study " + " ".join(argv or sys.argv[1:]), **doc}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot(doc["results"])
    (out / "lookup.png").write_bytes(png)
    (out / "lookup.json").write_text(json.dumps(doc, indent=2))
    page = Page("Lookup table or interpolation", subtitle=f"{args.checkpoint}, step {policy.step}")
    add_section(page, doc, png)
    page.write(out / "lookup.html")
    O.print_table(doc["results"])
    decision = doc["verdict"]
    print(
        f"verdict: {decision['verdict']} ({decision['starts_beyond_tolerance']} starts beyond "
        f"{100 * TOLERANCE_M:.1f} cm)"
    )
    print(f"wrote {out}/lookup.json, lookup.png and lookup.html in {doc['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
