r"""Lookup table or interpolation: the whole study's verdict, from the runs that measured it.

    python -m interp.lookup_verdict --out bench/reference_results/interp/lookup_verdict \
        --lookup bench/reference_results/interp/lookup_{named,named_rerun,grid_3x3,grid_5x5} \
        --snap bench/reference_results/interp/snap_{named,grid_3x3} \
        --kv-memory bench/reference_results/interp/kv_memory_named \
        --finetune bench/reference_results/interp/finetune_compare_{replay,new_only}

It reads what other commands wrote and runs nothing itself (a second): `interp.lookup_study`
(`lookup.json`: ACT beside the lookup table and the oracles, one directory per base, so the
bases trained on K = 5, 9, 25 places give the coverage curve), `interp.snap` (`snap.json`: where
along lines between training places the activations snap), `interp.kv_memory` (`kv_memory.json`)
and `interp.finetune_compare` (`compare.json`, one directory per comparison). It writes
`verdict.json`, `verdict.png` (success and alpha against K) and `verdict.html`, and
`python -m interp.report --lookup-verdict DIR` adds the same section to a report.

The rule, the issue's, fixed before the runs (each half is its study's own rule):
- *How ACT acts*, per base: `interp.lookup_study`'s verdict (lookup, interpolation, partial, or
  undecided when too few starts lie beyond the grasp's tolerance). Over bases: the one verdict
  the decided bases share, else "mixed".
- *The decoder MLP is the lookup table* only if every snap run puts the snap at the MLP's output
  and every fine-tune comparison favours the MLP (decoder_mlp beats action_head and the
  size-matched control in every seed). Otherwise it is not called the lookup table, and the
  reasons name each run that says no.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

POLICIES = ("act", "alt", "nearest", "interpolate", "expert")
FILES = {
    "lookup": "lookup.json",
    "snap": "snap.json",
    "kv": "kv_memory.json",
    "finetune": "compare.json",
}


def _read(directory: Path, name: str) -> dict:
    path = Path(directory) / name
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {name} (the study's --out directory?)")
    return json.loads(path.read_text())


def coverage_row(directory: Path, doc: dict) -> dict:
    """One base of the coverage curve: K, each policy's successes, alpha beyond tolerance."""
    v = doc["verdict"]
    return {
        "dir": str(directory),
        "k": doc["train_poses"],
        "checkpoint": doc["checkpoint"],
        "starts": doc["starts"],
        "successes": {p: doc["results"][p]["successes"] for p in POLICIES if p in doc["results"]},
        "starts_beyond_tolerance": v["starts_beyond_tolerance"],
        "tolerance_m": v["tolerance_m"],
        "act_alpha_median_beyond": v.get("alpha_median", {}).get("act"),
        "act_success_where_nearest_fails": v.get("act_success_where_nearest_fails"),
        "verdict": v["verdict"],
    }


def snap_row(directory: Path, doc: dict) -> dict:
    return {
        "dir": str(directory),
        "checkpoint": doc["checkpoint"],
        "snap_site": doc["snap_site"],
        "snap_at_mlp_output": bool(doc["mlp_rule"]["snap_at_mlp_output"]),
        "reason": doc["mlp_rule"].get("reason", ""),
    }


def finetune_row(directory: Path, doc: dict) -> dict:
    presets = {
        name: {
            "trainable_params": row["trainable_params"],
            "new_per_seed": row["new"]["per_seed"],
            "new_mean": row["new"]["mean"],
            "new_range": [row["new"]["min"], row["new"]["max"]],
            "old_mean": row["old"]["mean"],
        }
        for name, row in doc["presets"].items()
    }
    return {
        "dir": str(directory),
        "replay_old": doc["replay_old"],
        "seeds": doc["seeds"],
        "steps": doc["steps"],
        "before": doc["before"],
        "presets": presets,
        "verdict": doc["verdict"]["verdict"],
        "why": doc["verdict"]["why"],
    }


def kv_summary(directory: Path, doc: dict) -> dict:
    keys = ("share_pure_units", "purity_median", "episode_entropy_median", "alive_units")
    return {
        "dir": str(directory),
        "units": doc["units"],
        "chance_purity": doc["chance_purity"],
        **{f"{tag}_{k}": doc[tag][k] for tag in ("trained", "random_init") for k in keys},
    }


def decide(coverage: list[dict], snaps: list[dict], finetunes: list[dict]) -> dict:
    """The module docstring's rule on the rows above: {"behaviour", "mlp", "reasons"}."""
    decided = {r["verdict"] for r in coverage if not r["verdict"].startswith("undecided")}
    behaviour = decided.pop() if len(decided) == 1 else ("mixed" if decided else "undecided")
    reasons = [
        f"{Path(s['dir']).name}: the snap is not at the MLP's output ({s['reason']})"
        for s in snaps
        if not s["snap_at_mlp_output"]
    ]
    reasons += [
        f"{Path(f['dir']).name}: fine-tunes {f['verdict']} ({f['why']})"
        for f in finetunes
        if f["verdict"] != "favours the MLP"
    ]
    if not snaps or not finetunes:
        reasons.append("the rule needs at least one snap run and one fine-tune comparison")
    mlp = "not the lookup table" if reasons else "the lookup table"
    return {"behaviour": behaviour, "mlp": mlp, "reasons": reasons}


def summarize(
    lookup: Sequence[Path], snap: Sequence[Path], kv: Path | None, finetune: Sequence[Path]
) -> dict:
    """verdict.json's content (without the command and wall time)."""
    coverage = [coverage_row(d, _read(d, FILES["lookup"])) for d in lookup]
    coverage.sort(key=lambda r: r["k"])
    snaps = [snap_row(d, _read(d, FILES["snap"])) for d in snap]
    finetunes = [finetune_row(d, _read(d, FILES["finetune"])) for d in finetune]
    return {
        "coverage": coverage,
        "snap": snaps,
        "kv_memory": None if kv is None else kv_summary(kv, _read(kv, FILES["kv"])),
        "finetune": finetunes,
        "verdict": decide(coverage, snaps, finetunes),
    }


def figure(doc: dict) -> bytes:
    """PNG: each policy's success against K; ACT's median alpha beyond tolerance against K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from interp.overlays import fig_to_png

    rows = doc["coverage"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for policy, marker in zip(POLICIES, "os^vD", strict=True):
        pts = [
            (r["k"], r["successes"][policy] / r["starts"]) for r in rows if policy in r["successes"]
        ]
        if pts:
            ax1.plot(*zip(*pts, strict=True), marker=marker, ls="", label=policy, alpha=0.8)
    ks = sorted({r["k"] for r in rows})
    ax1.set_xticks(ks)
    ax1.set_xlabel("training places K (same number of demos)")
    ax1.set_ylabel("success on independent starts")
    ax1.set_ylim(-0.05, 1.05)
    ax1.legend(fontsize=8)
    pts = [(r["k"], r["act_alpha_median_beyond"]) for r in rows if r["act_alpha_median_beyond"]]
    if pts:
        ax2.plot(*zip(*pts, strict=True), "o", label="ACT")
    ax2.axhline(0, color="C2", ls=":", label="nearest replay (lookup)")
    ax2.axhline(1, color="C3", ls=":", label="interpolation")
    ax2.set_xticks(ks)
    ax2.set_xlim(ax1.get_xlim())
    ax2.set_xlabel("training places K")
    ax2.set_ylabel("median alpha, starts beyond tolerance")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig_to_png(fig)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def add_section(page, doc: dict, png: bytes) -> None:
    """The verdict's section of an `interp.page.Page`: verdict, coverage, snap, key-value
    memory, fine-tunes, each with its numbers."""
    v = doc["verdict"]
    page.section("Lookup or interpolation: the verdict", anchor="lookup-verdict")
    page.verdict(
        f"How ACT acts over its demos: {v['behaviour']} (per base below). The decoder MLP is "
        f"{v['mlp']}" + (": " + "; ".join(v["reasons"]) if v["reasons"] else "") + ".",
        "not-supported" if v["mlp"] == "not the lookup table" else "supported",
    )
    page.table(
        [
            "K",
            "base",
            "ACT",
            "lookup table",
            "nearest replay",
            "interpolation",
            "beyond tol.",
            "ACT alpha beyond",
            "verdict",
        ],
        [
            [
                r["k"],
                Path(r["dir"]).name,
                *(f"{r['successes'].get(p, '-')}/{r['starts']}" for p in POLICIES[:4]),
                r["starts_beyond_tolerance"],
                "-" if r["act_alpha_median_beyond"] is None else r["act_alpha_median_beyond"],
                r["verdict"],
            ]
            for r in doc["coverage"]
        ],
        caption="Coverage: success on independent starts and alpha (0 lookup, 1 interpolation)",
    )
    page.figure(png, "Success and ACT's median alpha against the number of training places")
    page.table(
        ["snap run", "snap site", "at the MLP's output"],
        [
            [Path(s["dir"]).name, s["snap_site"] or "none", s["snap_at_mlp_output"]]
            for s in doc["snap"]
        ],
        caption="Where it snaps (interp.snap)",
    )
    kv = doc["kv_memory"]
    if kv:
        page.paragraph(
            f"Decoder MLP as a key-value memory ({Path(kv['dir']).name}): place-pure units "
            f"{_pct(kv['trained_share_pure_units'])} trained vs "
            f"{_pct(kv['random_init_share_pure_units'])} untrained; median purity "
            f"{kv['trained_purity_median']:.2f} vs "
            f"{kv['random_init_purity_median']:.2f} (chance {kv['chance_purity']:.2f}); median "
            f"episode entropy {kv['trained_episode_entropy_median']:.2f} vs "
            f"{kv['random_init_episode_entropy_median']:.2f}."
        )
    for f in doc["finetune"]:
        rows = [
            [
                name,
                p["trainable_params"],
                " / ".join(_pct(x) for x in p["new_per_seed"].values()),
                f"{_pct(p['new_mean'])} ({_pct(p['new_range'][0])}-{_pct(p['new_range'][1])})",
                _pct(p["old_mean"]),
            ]
            for name, p in f["presets"].items()
        ]
        mode = "new and replayed old places" if f["replay_old"] else "new places only"
        page.table(
            ["trainable", "parameters", "new places, per seed", "mean (min-max)", "old kept"],
            rows,
            caption=f"Fine-tune on {mode}, {f['steps']} steps, seeds {f['seeds']} "
            f"({Path(f['dir']).name}; before: new {_pct(f['before']['new'])}, old "
            f"{_pct(f['before']['old'])}): {f['verdict']}",
        )
    page.command(doc["command"])


def run(lookup, snap, kv, finetune, out: Path, command: str) -> dict:
    from interp.page import Page

    t0 = time.time()
    doc = {"command": command, **summarize(lookup, snap, kv, finetune)}
    doc["wall_time_s"] = round(time.time() - t0, 1)
    png = figure(doc)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.json").write_text(json.dumps(doc, indent=1))
    (out / "verdict.png").write_bytes(png)
    page = Page("Lookup table or interpolation?")
    add_section(page, doc, png)
    page.write(out / "verdict.html")
    return doc


def main(argv=None) -> int:
    from interp import cli

    p = cli.parser("interp.lookup_verdict", __doc__)
    p.add_argument("--out", required=True, type=Path, help="directory for verdict.{json,png,html}")
    p.add_argument("--lookup", nargs="+", type=Path, required=True, help="interp.lookup_study dirs")
    p.add_argument("--snap", nargs="*", type=Path, default=[], help="interp.snap dirs")
    p.add_argument("--kv-memory", type=Path, default=None, help="an interp.kv_memory dir")
    p.add_argument("--finetune", nargs="*", type=Path, default=[], help="finetune_compare dirs")
    args = p.parse_args(argv)
    command = "python -m interp.lookup_verdict " + " ".join(sys.argv[1:] if argv is None else argv)
    with cli.expected_errors(p, args):
        doc = run(args.lookup, args.snap, args.kv_memory, args.finetune, args.out, command)
    v = doc["verdict"]
    print(f"behaviour: {v['behaviour']}; the decoder MLP is {v['mlp']}")
    for reason in v["reasons"]:
        print(f"  - {reason}")
    print(f"wrote {args.out}/verdict.json, verdict.png and verdict.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
