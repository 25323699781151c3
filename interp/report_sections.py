"""The sections of `interp.report`'s page, and the one registry every section goes through.

`render(report)` writes the page head (title, what the numbers come from, the command) and then
each registered `Section` in `order`. A section is a function `draw(page, report)` that adds
headings, tables and figures to an `interp.page.Page` from a `ReportData`: the numbers that
`report.json` holds, the attention figures, the frames and the network.

How to add a section (e.g. the output of a new study):

1. Write `draw(page: Page, report: ReportData) -> None`. Start it with
   `page.section(title, anchor=...)`; read only `report` (everything in it is computed already).
2. If the section shows another command's output directory, describe it with a `Study`: the
   flag (`--where-it-snaps`, say), the file that must be in the directory, the command that
   writes it, and `load(dir) -> (numbers, payload)`. The report then gets the flag (checked
   before any work), `build_report(..., where_it_snaps=DIR)` works, `numbers` is stored in
   `report.json` under the study's key (`where_it_snaps`), and `draw` finds
   `report.studies[key]` = `payload`. Without the flag the section is left out. For the usual
   study (`python -m interp.<name> --out DIR` writing `<stem>.json` and `<stem>.png`, drawn by
   its module's `add_section(page, doc, png)`), `page_study(flag, stem, numbers)` is that Study.
3. Register it at the bottom of this file, next to the others:
   `register(Section("where_it_snaps", order=60, draw=draw, study=Study(...)))`. If `draw`
   lives in the study's own module, import that module inside a small wrapper here (as
   `lookup_study_section` does): the study's module must not import this one (the import graph
   allows no cycle). `order` places the section: the checkpoint is 10, claims 1 and 2 are 20 and
   21, attention 30, claim 3 40, the lookup study 50, the snap study 55, the parameter tree 90,
   "Reproduce" 100.

Nothing in `interp.report.build_report` changes for a new section.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from interp import absorption
from interp.page import Page
from interp.verdicts import primary_split, probe_verdict


@dataclasses.dataclass(frozen=True)
class ReportData:
    """What a section draws from; everything in it is computed before the page is drawn.

    Attributes:
        numbers: what `report.json` holds under "numbers" (checkpoint, settings, tokens, claims,
            state absorption, attention, verdicts, and each given study's numbers by its key).
        command: the command line behind the numbers.
        config: the checkpoint's experiment config.
        model, variables: the trained network (`act_jax.model.ACT` and its variables).
        frames: the attention frames, {"images": {camera: (B, H, W, 3)}, "state": (B, S), ...}.
        meta: per attention frame {"episode", "step", "phase"} lists.
        attention_pngs: {file name: PNG bytes} of `interp.attention_analysis`.
        studies: {study key: what its `Study.load` returned for the page}.
    """

    numbers: dict
    command: str
    config: Any
    model: Any
    variables: Mapping
    frames: dict
    meta: dict
    attention_pngs: dict[str, bytes]
    studies: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Study:
    """Another command's output directory, shown by a section when its flag is given.

    Attributes:
        flag: the report's option, e.g. "--lookup-study"; it takes a directory.
        needs: the file that must be in the directory (checked before any work).
        made_by: the command that writes the directory (named when it is missing).
        load: directory -> (numbers kept in report.json under the study's key, the payload
            that the section's `draw` finds in `report.studies[key]`).
        help: the option's help text.
    """

    flag: str
    needs: str
    made_by: str
    load: Callable[[Path], tuple[dict, Any]]
    help: str = ""

    def problem(self, directory: str | Path) -> str | None:
        """Why `directory` is not this study's output (None: it is)."""
        if (Path(directory) / self.needs).is_file():
            return None
        return f"{self.flag}: no {self.needs} in {directory} (run {self.made_by} first)"


@dataclasses.dataclass(frozen=True)
class Section:
    """One part of the page: `draw(page, report)`, placed by `order` (module docstring)."""

    key: str
    order: float
    draw: Callable[[Page, ReportData], None]
    study: Study | None = None


SECTIONS: dict[str, Section] = {}


def register(section: Section) -> Section:
    """Adds a section to every report from now on (a key registered twice is an error)."""
    if section.key in SECTIONS:
        raise ValueError(f"a report section {section.key!r} is registered already")
    SECTIONS[section.key] = section
    return section


def studies() -> dict[str, Study]:
    """{key: Study} of the registered sections that show another command's output."""
    return {k: s.study for k, s in SECTIONS.items() if s.study is not None}


def render(report: ReportData) -> Page:
    """The whole page: the head, then every registered section in order."""
    ck = report.numbers["checkpoint"]
    page = Page("How the policy decides", subtitle=f"{ck['checkpoint']}, step {ck.get('step')}")
    page.paragraph(
        "Every number on this page comes from the command below; report.json beside this file "
        "holds them all. Verdicts follow rules fixed before the runs (interp.report, "
        "interp.absorption)."
    )
    page.command(report.command or "python -m interp.report ...")
    for section in sorted(SECTIONS.values(), key=lambda s: s.order):
        if section.study is None or section.key in report.studies:
            section.draw(page, report)
    return page


# ---- Probe tables and figures (claims 1-3).

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


def probe_rows(result: dict) -> list[list]:
    """One table row per split of a probe result, in `PROBE_HEADER`'s columns."""
    rows = []
    for split, s in result["splits"].items():
        c = s["controls"]
        folds = (
            f"{s['fold_mean']:.2f} +- {s['fold_std']:.2f}" if s["fold_mean"] is not None else "n/a"
        )
        random_init = None if c["random_init"] is None else c["random_init"]["score"]
        rows.append(
            [result["feature"], result["target"], split, s["metric"], s["score"], folds]
            + [random_init, c["shuffled"]["score"], c["control_task"]["score"]]
            + [c["selectivity"], c["time_only"]["score"], probe_verdict(s)[0]]
        )
    return [[("n/a" if v is None else v) for v in r] for r in rows]


def probe_figure(rows: list[tuple[str, dict]]) -> bytes:
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


# ---- The sections.


def checkpoint_section(page: Page, report: ReportData) -> None:
    """The model, the dataset and the encoder's token layout."""
    numbers, m = report.numbers, report.config.model
    s, t = numbers["settings"], numbers["tokens"]
    page.section("The checkpoint", anchor="checkpoint")
    transformer = (
        f"d={m.dim_model}, {m.n_heads} heads, {m.n_encoder_layers} encoder and "
        f"{m.n_decoder_layers} decoder layers"
    )
    probed = f"{numbers['frames']} (every {s['frame_stride']}th frame of each episode)"
    page.table(
        ["field", "value"],
        [
            ["cameras", ", ".join(m.cameras)],
            ["image size (H, W)", "x".join(str(v) for v in m.image_size)],
            ["backbone", f"{m.get('backbone', 'resnet18')} width {m.backbone_width}"],
            ["transformer", transformer],
            ["chunk size", m.chunk_size],
            ["dataset", s["dataset"]],
            ["frames probed", probed],
        ],
    )
    h, w = t["grid"]
    rows = [["latent", 0, 0], ["state", 1, 1]]
    for k, cam in enumerate(t["cameras"]):
        start = 2 + k * h * w
        rows.append([f"{cam} pixels ({h}x{w}, row-major)", start, start + h * w - 1])
    page.table(["encoder tokens", "first", "last"], rows, caption=f"{t['n_tokens']} encoder tokens")


def _claim_section(page: Page, report: ReportData, key: str, title: str) -> None:
    """A probe claim: its verdict per target, every probe's row and the bars."""
    page.section(title, anchor=key)
    for tv in report.numbers["verdicts"][key]["targets"].values():
        page.verdict(tv["sentence"], tv["status"])
    table, bars = [], []
    for feature, targets in report.numbers["claims"][key].items():
        for target, r in targets.items():
            table += probe_rows(r)
            split = primary_split(r)
            bars.append((f"{target} <- {feature} ({split})", r["splits"][split]))
    page.table(PROBE_HEADER, table)
    page.figure(probe_figure(bars), f"{title}: each probe beside its controls")


def claim_1_section(page: Page, report: ReportData) -> None:
    _claim_section(
        page, report, "claim_1", "Claim 1: backbone features carry what the policy needs"
    )


def claim_2_section(page: Page, report: ReportData) -> None:
    """Claim 2, then how the probes of both claims were held out and controlled."""
    _claim_section(
        page, report, "claim_2", "Claim 2: the decoder's action vector encodes the environment"
    )
    claim_1 = report.numbers["claims"]["claim_1"]
    page.paragraph(
        "Cube position is the cube's start pose, probed on approach frames only (the episodes "
        "record no later pose). Held out: episode = 5 folds grouped by episode; location = "
        "leave-one-cube-location-out. Control types for selectivity: "
        + claim_1[next(iter(claim_1))]["cube_xy"]["control_types"]
        + "."
    )


def attention_section(page: Page, report: ReportData) -> None:
    """Concentration, entropy and shares per attention site, and the figures."""
    a = report.numbers["attention"]
    page.section("Attention", anchor="attention")
    page.paragraph(
        f"{a['n_frames']} evenly spaced dataset frames, by task phase {a['phases']}. k90: tokens "
        "holding 90% of a row's attention (uniform over all tokens as the contrast)."
    )
    rows = []
    for site, v in a["sites"].items():
        e = v["all"]["head_mean"]
        rows.append(
            [site, e["k90"]["mean"], a["uniform"]["k90"]["count"], e["entropy"]["mean"]]
            + [e["share_state"]["mean"], e["share_latent"]["mean"], a["uniform"]["share_state"]]
        )
    header = ["site", "k90 (mean)", "k90 uniform", "entropy", "state share", "latent share"]
    page.table(header + ["uniform share"], rows)
    for name, png in report.attention_pngs.items():
        page.figure(png, name.removesuffix(".png").replace("_", " "))


def claim_3_section(page: Page, report: ReportData) -> None:
    """State absorption: probes across the encoder, interventions on frames and in the sim."""
    page.section("Claim 3: the state is absorbed into the pixel tokens", anchor="claim_3")
    v3 = report.numbers["verdicts"]["claim_3"]
    page.verdict(v3["sentence"], v3["status"])
    sa = report.numbers["state_absorption"]
    rows = [row for r in sa["probes"]["sites"].values() for row in probe_rows(r)]
    page.table(
        PROBE_HEADER,
        rows,
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
    _sim_table(page, sa["sim"], report.numbers["settings"]["sim_seeds"])


def _sim_table(page: Page, sim: dict, seeds: list[int]) -> None:
    """Success per condition of the simulated pick-and-place, paired with the clean policy."""
    rows = [
        [
            k,
            f"{v['successes']}/{sim['starts']}",
            v["rate"],
            f"{v['ci95'][0]:.2f}-{v['ci95'][1]:.2f}",
        ]
        + [v.get("lost", ""), v.get("gained", ""), v.get("p_paired", "")]
        for k, v in sim["conditions"].items()
    ]
    page.table(
        ["condition", "successes", "rate", "95% interval", "lost", "gained", "paired p"],
        rows,
        caption=f"Simulated pick-and-place from {sim['starts']} independent uniform starts (seeds "
        f"{seeds[0]}-{seeds[1]}), each run once per condition; lost/gained: "
        "starts the patched policy fails/solves where the clean one does not (exact paired test)",
    )


def trees_section(page: Page, report: ReportData) -> None:
    """Treescope renders of the parameters and of every hook point on one frame."""
    from interp.hooks import run_with_cache

    page.section("The parameter tree and one captured cache", anchor="trees")
    page.tree(report.variables["params"], "Parameters (click to expand)")
    frames, meta = report.frames, report.meta
    one = {"images": {c: v[:1] for c, v in frames["images"].items()}, "state": frames["state"][:1]}
    _, cache = run_with_cache(report.model, report.variables, one)
    page.tree(
        {k: np.asarray(v) for k, v in cache.items()},
        f"Every hook point on one frame (episode {meta['episode'][0]}, step {meta['step'][0]})",
    )


def reproduce_section(page: Page, report: ReportData) -> None:
    """The command again and every setting."""
    page.section("Reproduce", anchor="reproduce")
    page.command(report.command or "python -m interp.report ...")
    settings = report.numbers["settings"]
    page.table(["setting", "value"], [[k, json.dumps(v)] for k, v in settings.items()])


def page_study(flag: str, stem: str, numbers: Callable[[dict], dict]) -> Study:
    """The usual study: `python -m interp.<stem> --out DIR` writes `<stem>.json` and `<stem>.png`
    there. Its numbers in report.json: the directory and `numbers(doc)`; the payload (doc, png),
    which the study's own `add_section(page, doc, png)` draws."""
    module = f"interp.{flag.removeprefix('--').replace('-', '_')}"

    def load(directory: Path) -> tuple[dict, Any]:
        doc = json.loads((directory / f"{stem}.json").read_text())
        png = (directory / f"{stem}.png").read_bytes()
        return {"dir": str(directory), **numbers(doc)}, (doc, png)

    return Study(
        flag=flag,
        needs=f"{stem}.json",
        made_by=f"python -m {module} --out DIR",
        load=load,
        help=f"add the section of an {module} run (its --out directory)",
    )


def lookup_study_section(page: Page, report: ReportData) -> None:
    """The lookup-or-interpolation study (`interp.lookup_study`), drawn by that module."""
    from interp import lookup_study

    lookup_study.add_section(page, *report.studies["lookup_study"])


def snap_section(page: Page, report: ReportData) -> None:
    """Where along lines between training places the activations snap (`interp.snap`)."""
    from interp import snap

    snap.add_section(page, *report.studies["snap"])


def lookup_verdict_section(page: Page, report: ReportData) -> None:
    """The whole lookup study's verdict: coverage, snap, key-value memory, fine-tunes
    (`interp.lookup_verdict`)."""
    from interp import lookup_verdict

    lookup_verdict.add_section(page, *report.studies["lookup_verdict"])


LOOKUP_STUDY = page_study("--lookup-study", "lookup", lambda doc: {"verdict": doc["verdict"]})
SNAP = page_study(
    "--snap",
    "snap",
    lambda doc: {
        "snap_site": doc["snap_site"],
        "mlp_rule": doc["mlp_rule"],
        "calibration_valid": doc["calibration"]["valid"],
    },
)

register(Section("checkpoint", 10, checkpoint_section))
register(Section("claim_1", 20, claim_1_section))
register(Section("claim_2", 21, claim_2_section))
register(Section("attention", 30, attention_section))
register(Section("claim_3", 40, claim_3_section))
register(Section("lookup_study", 50, lookup_study_section, study=LOOKUP_STUDY))
register(Section("snap", 55, snap_section, study=SNAP))
LOOKUP_VERDICT = page_study("--lookup-verdict", "verdict", lambda doc: {"verdict": doc["verdict"]})
register(Section("lookup_verdict", 57, lookup_verdict_section, study=LOOKUP_VERDICT))
register(Section("trees", 90, trees_section))
register(Section("reproduce", 100, reproduce_section))
