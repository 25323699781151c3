r"""How a checkpoint decides: one self-contained HTML report and its numbers as JSON.

    python -m interp.report --checkpoint runs/sim_default --out runs/sim_default/report

writes `report.html` (figures inlined, tables, the command and seeds behind every number,
treescope renders of the parameter tree and of one captured cache) and `report.json` to `--out`,
and keeps the activation collections it probed under `--out/collections/` (rerun
`python -m interp.claims` on them with other settings). Sections:

1. The checkpoint: step, config, the encoder's token layout (`interp.tokens`).
2. Claims 1 and 2 (`interp.claims`): probes of cube position, arm state, ground-truth chunk and
   phase from each camera's backbone features and from the decoder's action vector, with the
   random-init, shuffled, control-task and time-only controls.
3. Attention (`interp.attention_analysis`) on evenly spaced dataset frames, by task phase.
4. Claim 3, state absorption (`interp.absorption`): state probes across the encoder and the
   causal tests on dataset frames and in the simulator.
5. The parameter tree and one captured cache; how to reproduce.

Verdict rule for a probe (fixed before any run; `probe_verdict`): the margin is the score minus
the best of its random-init, shuffled and time-only controls. Supported: score >= 0.5, margin
>= 0.1 and selectivity >= 0.1; partial: margin >= 0.05; otherwise not supported. A claim's
target takes its best camera; the claim is supported when every target is, not supported when
none is at least partial. Claim 3 has its own rule (`interp.absorption`).

The numbers are a deterministic function of the checkpoint, the dataset and the flags: the
simulator and the policy are deterministic, and so are the probes' folds and seeds. The JSON
keeps the wall times apart (`timing`), so two runs' `numbers` compare equal.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from interp import absorption, claims
from interp.page import Page
from interp.probes import clean
from interp.shards import MANIFEST, Collection

RULE = {"min_score": 0.5, "min_margin": 0.1, "min_selectivity": 0.1, "partial_margin": 0.05}


def probe_verdict(split: dict) -> tuple[str, float | None]:
    """(status, margin) of one probe split by the rule of the module docstring."""
    c = split["controls"]
    nulls = [c["shuffled"]["score"], c["time_only"]["score"]]
    if c["random_init"] is not None:
        nulls.append(c["random_init"]["score"])
    nulls = [v for v in nulls if v is not None]
    score, sel = split["score"], c["selectivity"]
    if score is None or not nulls:
        return "not-supported", None
    margin = score - max(nulls)
    if (
        score >= RULE["min_score"]
        and margin >= RULE["min_margin"]
        and (sel or 0) >= RULE["min_selectivity"]
    ):
        return "supported", margin
    return ("partial" if margin >= RULE["partial_margin"] else "not-supported"), margin


def primary_split(result: dict) -> str:
    """The split a verdict reads: leave-one-location-out where it ran, else episodes."""
    return "location" if "location" in result["splits"] else "episode"


_RANK = {"not-supported": 0, "partial": 1, "supported": 2}


def claim_verdicts(claim: dict) -> dict:
    """{target: {"status", "feature", "sentence"}} (best feature per target) and the claim's."""
    per_target: dict = {}
    for feature, targets in claim.items():
        for target, r in targets.items():
            split = primary_split(r)
            status, margin = probe_verdict(r["splits"][split])
            sentence = claims.summarise(r)[list(r["splits"]).index(split)]
            if margin is not None:
                sentence += f"; {margin:+.2f} over the best of random-init, shuffled, time-only"
            best = per_target.get(target)
            if best is None or (_RANK[status], margin or -1) > (
                _RANK[best["status"]],
                best["margin"] or -1,
            ):
                per_target[target] = {
                    "status": status,
                    "margin": margin,
                    "feature": feature,
                    "sentence": sentence,
                }
    ranks = [_RANK[v["status"]] for v in per_target.values()]
    overall = (
        "supported" if min(ranks) == 2 else ("not-supported" if max(ranks) == 0 else "partial")
    )
    return {"targets": per_target, "status": overall}


def _clear(path: Path) -> None:
    """Removes a collection this report wrote before (and nothing that is not one)."""
    if not path.exists():
        return
    manifest = path / MANIFEST
    is_ours = manifest.exists() and json.loads(manifest.read_text()).get("format", "").startswith(
        "act_jax.interp.collect"
    )
    if not is_ours and any(path.iterdir()):
        raise FileExistsError(
            f"{path} exists and is not an interp collection; choose another --out"
        )
    shutil.rmtree(path)


def _probe_figure(rows: list[tuple[str, dict]]) -> bytes:
    """Grouped bars: each probe's score beside its controls."""
    from interp.overlays import fig_to_png, plt

    keys = ("trained", "random_init", "shuffled", "control_task", "time_only")
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.4))
    y = np.arange(len(rows))
    h = 0.8 / len(keys)
    for i, key in enumerate(keys):
        vals = []
        for _, s in rows:
            v = absorption.split_score(s, key)
            vals.append(np.nan if v is None else max(v, -0.5))
        ax.barh(y + i * h - 0.4 + h / 2, vals, height=h, label=key.replace("_", "-"))
    ax.set_yticks(y, [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="#999", lw=0.5)
    ax.set_xlabel("held-out R^2 (accuracy for phase); clipped at -0.5")
    ax.legend(fontsize=7, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig_to_png(fig)


def _probe_rows(result: dict) -> list[list]:
    rows = []
    for split, s in result["splits"].items():
        c = s["controls"]
        get = lambda v: None if v is None else v["score"]
        rows.append(
            [
                result["feature"],
                result["target"],
                split,
                s["metric"],
                s["score"],
                f"{s['fold_mean']:.2f} +- {s['fold_std']:.2f}"
                if s["fold_mean"] is not None
                else "n/a",
                get(c["random_init"]),
                c["shuffled"]["score"],
                c["control_task"]["score"],
                c["selectivity"],
                c["time_only"]["score"],
                probe_verdict(s)[0],
            ]
        )
    return [[("n/a" if v is None else v) for v in r] for r in rows]


PROBE_HEADER = [
    "feature",
    "target",
    "held out",
    "metric",
    "score",
    "folds",
    "random-init",
    "shuffled",
    "control task",
    "selectivity",
    "time-only",
    "verdict",
]


def build_report(
    checkpoint: str | Path,
    out: str | Path,
    *,
    dataset: str | Path | None = None,
    frame_stride: int = 3,
    attention_frames: int = 96,
    sim_starts: int = 20,
    sim_seed: int = 5000,
    max_steps: int | None = None,
    execution: str | None = None,
    seed: int = 0,
    random_init_seed: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    command: str = "",
    lookup_study: str | Path | None = None,
) -> dict:
    """Builds the report (module docstring); returns what `report.json` holds.

    `lookup_study`: a directory written by `interp.lookup_study` (lookup.json, lookup.png),
    whose section the page then carries."""
    from act_jax.data import dataset_dir_for
    from act_jax.policy import Policy
    from interp.attention_analysis import analyse_attention, frames_from_dataset, headline
    from interp.collect import collect, load_network
    from interp.hooks import run_with_cache
    from interp.tokens import TokenIndex

    out = Path(out)
    timing: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(what: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing[what] = round(now - clock, 2)
        clock = now
        if progress:
            print(f"report: {what} done in {timing[what]:.0f} s", flush=True)

    net = load_network(checkpoint)
    config, model, variables = net.config, net.model, net.variables
    rinit = int(config.train.seed) if random_init_seed is None else int(random_init_seed)
    rnd = load_network(checkpoint, random_init_seed=rinit)
    dataset = Path(dataset) if dataset else dataset_dir_for(config.data)
    if not (dataset / "dataset_info.json").exists():
        raise FileNotFoundError(f"no act_episodes dataset at {dataset} (dataset_info.json missing)")
    mc = config.model
    tokens = TokenIndex.for_config(mc)
    execution = execution or config.eval.get("execution", "ensemble:0.01")
    max_steps = max_steps or int(config.eval.get("max_steps", 400))
    settings = {
        "dataset": str(dataset.absolute()),
        "frame_stride": frame_stride,
        "attention_frames": attention_frames,
        "sim_starts": sim_starts,
        "sim_seeds": [sim_seed, sim_seed + sim_starts - 1],
        "max_steps": max_steps,
        "execution": execution,
        "probe_seed": seed,
        "random_init_seed": rinit,
        "folds": 5,
        "inner_folds": 3,
    }

    # Activations of the trained and the randomly initialised network, the same frames.
    streams = absorption.stream_names(mc)
    claim_names = [f"backbone/{c}" for c in mc.cameras] + ["decoder/out"]
    pooled = claim_names + (streams if absorption.pooled_streams(mc) else [])
    colls = {}
    for tag, network in (("trained", net), ("random_init", rnd)):
        path = out / "collections" / tag
        _clear(path)
        collect(
            network,
            dataset,
            claim_names + streams,
            path,
            pooled=pooled,
            frame_stride=frame_stride,
            batch_size=batch_size,
            progress=progress,
            command=f"interp.report ({tag})",
        )
        colls[tag] = Collection(path)
    lap("collect")

    probe_kw = dict(n_folds=5, inner_folds=3, seed=seed)
    claim_result = claims.run_claims(
        colls["trained"].out_dir, colls["random_init"].out_dir, progress=progress, **probe_kw
    )
    layer_probes = absorption.probe_layers(
        colls["trained"], colls["random_init"], tokens, streams, **probe_kw
    )
    lap("probes")

    frames, meta = frames_from_dataset(dataset, config, net.norm_stats, attention_frames)
    view = {"images": frames["images"], "state": frames["state"]}
    attention, attention_pngs = analyse_attention(model, variables, view, tokens, meta["phase"])
    lap("attention")

    ref = absorption.in_batches(
        lambda sub: run_with_cache(model, variables, sub, ["encoder/input_tokens"])[1][
            "encoder/input_tokens"
        ],
        view,
        16,
    )
    conditions = absorption.interventions(mc, tokens, ref, seed)
    changes = absorption.action_changes(model, variables, frames, conditions)
    lap("interventions on frames")
    policy = Policy(model, variables, config, net.norm_stats, step=net.origin.get("step") or -1)
    sim = absorption.sim_success(
        policy,
        conditions,
        starts=sim_starts,
        seed=sim_seed,
        max_steps=max_steps,
        execution=execution,
        progress=progress,
    )
    lap("interventions in simulation")
    status3, sentence3 = absorption.verdict(layer_probes, changes)

    verdicts = {k: claim_verdicts(claim_result[k]) for k in ("claim_1", "claim_2")}
    verdicts["claim_3"] = {"status": status3, "sentence": sentence3}
    numbers = {
        "checkpoint": net.origin,
        "settings": settings,
        "tokens": {
            "n_tokens": tokens.n_tokens,
            "cameras": list(tokens.cameras),
            "grid": list(tokens.grid),
        },
        "frames": colls["trained"].manifest["frames"],
        "claims": {k: claim_result[k] for k in ("claim_1", "claim_2")},
        "state_absorption": {"probes": layer_probes, "frames": changes, "sim": sim},
        "attention": attention,
        "verdicts": verdicts,
    }
    extra = None
    if lookup_study is not None:
        from interp import lookup_study as study

        doc = json.loads((Path(lookup_study) / "lookup.json").read_text())
        png = (Path(lookup_study) / "lookup.png").read_bytes()
        numbers["lookup_study"] = {"dir": str(lookup_study), "verdict": doc["verdict"]}
        extra = lambda page: study.add_section(page, doc, png)  # noqa: E731
    page = _page(numbers, attention_pngs, frames, meta, model, variables, config, command, extra)
    lap("page")
    result = {"command": command, "numbers": numbers, "timing": timing}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(clean(result), indent=1, allow_nan=False))
    page.write(out / "report.html")
    if progress:
        print(headline(attention))
    return result


def _page(
    numbers, attention_pngs, frames, meta, model, variables, config, command, extra=None
) -> Page:
    from interp.hooks import run_with_cache

    ck = numbers["checkpoint"]
    s = numbers["settings"]
    t = numbers["tokens"]
    page = Page("How the policy decides", subtitle=f"{ck['checkpoint']}, step {ck.get('step')}")
    page.paragraph(
        "Every number on this page comes from the command below; report.json beside this file "
        "holds them all. Verdicts follow rules fixed before the runs (interp.report, "
        "interp.absorption)."
    )
    page.command(command or "python -m interp.report ...")

    page.section("The checkpoint", anchor="checkpoint")
    m = config.model
    page.table(
        ["field", "value"],
        [
            ["cameras", ", ".join(m.cameras)],
            ["image size (H, W)", "x".join(str(v) for v in m.image_size)],
            ["backbone", f"{m.get('backbone', 'resnet18')} width {m.backbone_width}"],
            [
                "transformer",
                f"d={m.dim_model}, {m.n_heads} heads, {m.n_encoder_layers} encoder and "
                f"{m.n_decoder_layers} decoder layers",
            ],
            ["chunk size", m.chunk_size],
            ["dataset", s["dataset"]],
            [
                "frames probed",
                f"{numbers['frames']} (every {s['frame_stride']}th frame of each episode)",
            ],
        ],
    )
    h, w = t["grid"]
    rows = [["latent", 0, 0], ["state", 1, 1]]
    for k, cam in enumerate(t["cameras"]):
        start = 2 + k * h * w
        rows.append([f"{cam} pixels ({h}x{w}, row-major)", start, start + h * w - 1])
    page.table(["encoder tokens", "first", "last"], rows, caption=f"{t['n_tokens']} encoder tokens")

    titles = {
        "claim_1": "Claim 1: backbone features carry what the policy needs",
        "claim_2": "Claim 2: the decoder's action vector encodes the environment",
    }
    for key, title in titles.items():
        v = numbers["verdicts"][key]
        page.section(title, anchor=key)
        for tv in v["targets"].values():
            page.verdict(tv["sentence"], tv["status"])
        table, bars = [], []
        for feature, targets in numbers["claims"][key].items():
            for target, r in targets.items():
                table += _probe_rows(r)
                split = primary_split(r)
                bars.append((f"{target} <- {feature} ({split})", r["splits"][split]))
        page.table(PROBE_HEADER, table)
        page.figure(_probe_figure(bars), f"{title}: each probe beside its controls")
    page.paragraph(
        "Cube position is the cube's start pose, probed on approach frames only (the episodes "
        "record no later pose). Held out: episode = 5 folds grouped by episode; location = "
        "leave-one-cube-location-out. Control types for selectivity: "
        + numbers["claims"]["claim_1"][next(iter(numbers["claims"]["claim_1"]))]["cube_xy"][
            "control_types"
        ]
        + "."
    )

    page.section("Attention", anchor="attention")
    a = numbers["attention"]
    page.paragraph(
        f"{a['n_frames']} evenly spaced dataset frames, by task phase {a['phases']}. k90: tokens "
        "holding 90% of a row's attention (uniform over all tokens as the contrast)."
    )
    arows = []
    for site, v in a["sites"].items():
        e = v["all"]["head_mean"]
        arows.append(
            [
                site,
                e["k90"]["mean"],
                a["uniform"]["k90"]["count"],
                e["entropy"]["mean"],
                e["share_state"]["mean"],
                e["share_latent"]["mean"],
                a["uniform"]["share_state"],
            ]
        )
    page.table(
        [
            "site",
            "k90 (mean)",
            "k90 uniform",
            "entropy",
            "state share",
            "latent share",
            "uniform share",
        ],
        arows,
    )
    for name, png in attention_pngs.items():
        page.figure(png, name.removesuffix(".png").replace("_", " "))

    page.section("Claim 3: the state is absorbed into the pixel tokens", anchor="claim_3")
    v3 = numbers["verdicts"]["claim_3"]
    page.verdict(v3["sentence"], v3["status"])
    sa = numbers["state_absorption"]
    prow = []
    for r in sa["probes"]["sites"].values():
        prow += _probe_rows(r)
    page.table(
        PROBE_HEADER,
        prow,
        caption="Joint state from the pixel tokens only (" + sa["probes"]["features"] + ")",
    )
    page.figure(absorption.rise_figure(sa["probes"]), "State R^2 across the encoder")
    fr = sa["frames"]
    page.table(
        ["intervention", "mean |change|", "median frame", "/ clean error"],
        [
            [k, v["mean_abs_change"], v["median_frame_change"], v["relative_to_clean_error"]]
            for k, v in fr["conditions"].items()
        ],
        caption=f"Change of the predicted chunk on {fr['n_frames']} dataset frames (normalised "
        "action units); the clean chunk's error against the recorded one is "
        f"{fr['clean_error']:.3f}",
    )
    page.figure(absorption.changes_figure(fr), "Action change per intervention")
    sim = sa["sim"]
    page.table(
        ["condition", "successes", "rate", "95% interval", "lost", "gained", "paired p"],
        [
            [
                k,
                f"{v['successes']}/{sim['starts']}",
                v["rate"],
                f"{v['ci95'][0]:.2f}-{v['ci95'][1]:.2f}",
                v.get("lost", ""),
                v.get("gained", ""),
                v.get("p_paired", ""),
            ]
            for k, v in sim["conditions"].items()
        ],
        caption=f"Simulated pick-and-place from {sim['starts']} independent uniform starts (seeds "
        f"{s['sim_seeds'][0]}-{s['sim_seeds'][1]}), each run once per condition; lost/gained: "
        "starts the patched policy fails/solves where the clean one does not (exact paired test)",
    )

    if extra is not None:  # sections of other studies (the lookup study)
        extra(page)

    page.section("The parameter tree and one captured cache", anchor="trees")
    page.tree(variables["params"], "Parameters (click to expand)")
    one = {"images": {c: v[:1] for c, v in frames["images"].items()}, "state": frames["state"][:1]}
    _, cache = run_with_cache(model, variables, one)
    page.tree(
        {k: np.asarray(v) for k, v in cache.items()},
        f"Every hook point on one frame (episode {meta['episode'][0]}, step {meta['step'][0]})",
    )

    page.section("Reproduce", anchor="reproduce")
    page.command(command or "python -m interp.report ...")
    page.table(["setting", "value"], [[k, json.dumps(v)] for k, v in s.items()])
    return page


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/)")
    p.add_argument("--out", required=True, help="directory for report.html, report.json")
    p.add_argument("--dataset", help="act_episodes dataset dir (default: the checkpoint's own)")
    p.add_argument("--frame-stride", type=int, default=3, help="probe every s-th frame (default 3)")
    p.add_argument(
        "--attention-frames", type=int, default=96, help="frames for attention and interventions"
    )
    p.add_argument(
        "--sim-starts", type=int, default=20, help="independent uniform starts per condition"
    )
    p.add_argument("--sim-seed", type=int, default=5000, help="first start's seed")
    p.add_argument(
        "--max-steps", type=int, default=None, help="ticks per rollout (default: config)"
    )
    p.add_argument("--execution", default=None, help="chunk execution (default: config's eval)")
    p.add_argument(
        "--seed", type=int, default=0, help="probe shuffles, control task, control pixel"
    )
    p.add_argument(
        "--random-init-seed",
        type=int,
        default=None,
        help="weights of the random-init control (default: the training seed, i.e. "
        "the network before training)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="frames per forward pass")
    p.add_argument(
        "--lookup-study",
        metavar="DIR",
        default=None,
        help="add the section of an interp.lookup_study run (its --out directory)",
    )
    args = p.parse_args(argv)
    if args.lookup_study and not (Path(args.lookup_study) / "lookup.json").is_file():
        p.error(
            f"--lookup-study: no lookup.json in {args.lookup_study} (run "
            "python -m interp.lookup_study --out DIR first)"
        )
    for flag in ("frame_stride", "attention_frames", "sim_starts", "batch_size", "max_steps"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    if args.execution:
        from act_jax.execution import make_executor

        try:
            make_executor(args.execution)
        except ValueError as e:
            p.error(f"--execution: {e}")
    command = "python -m interp.report " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        result = build_report(
            args.checkpoint,
            args.out,
            dataset=args.dataset,
            frame_stride=args.frame_stride,
            attention_frames=args.attention_frames,
            sim_starts=args.sim_starts,
            sim_seed=args.sim_seed,
            max_steps=args.max_steps,
            execution=args.execution,
            seed=args.seed,
            random_init_seed=args.random_init_seed,
            batch_size=args.batch_size,
            command=command,
            lookup_study=args.lookup_study,
        )
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        p.error(str(e))
    v = result["numbers"]["verdicts"]
    for k in ("claim_1", "claim_2"):
        for tv in v[k]["targets"].values():
            print(f"{k} [{tv['status']}] {tv['sentence']}")
    print(f"claim_3 [{v['claim_3']['status']}] {v['claim_3']['sentence']}")
    print(
        f"wrote {Path(args.out) / 'report.html'} and report.json in "
        f"{sum(result['timing'].values()):.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
