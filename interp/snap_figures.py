"""The figure and the HTML section of `interp.snap` (`plot`, `add_section`), from its snap.json."""

from __future__ import annotations

import numpy as np

from interp import snap_fit as F


def _line_coefficients(block: dict) -> np.ndarray:
    """(lines, lambdas) coefficients, NaN rows for lines without a curve."""
    rows = [p["coefficient"] for p in block["per_line"] if p is not None]
    return np.array(rows, np.float64) if rows else np.zeros((0, 0))


def _median(values) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def site_rows(doc: dict) -> list[dict]:
    """One summary per curve: the model's sites in forward order, then aim and grasp."""
    blocks = [(s, doc["curves"][s]) for s in doc["sites"]]
    blocks += [(k, doc["behaviour"][k]) for k in ("aim", "grasp")]
    blocks += [(f"{k} (calibration)", doc["calibration"][k]) for k in ("expert", "nearest")]
    rows = []
    for name, b in blocks:
        fits = [p["fit"] for p in b["per_line"] if p is not None]
        rows.append(
            {
                "name": name,
                "snap_lines": b["snap_lines"],
                "lines": len(b["per_line"]),
                "snaps": b["snaps"],
                "delta_bic": _median([f["delta_bic"] for f in fits]),
                "max_jump": _median([f["max_jump"] for f in fits]),
                "residual": _median([f["residual_median"] for f in fits]),
                "threshold": _median([f["step"]["threshold"] for f in fits]),
                "probe_r2": doc["probes"].get(name, {}).get("r2"),
                "block": b,
            }
        )
    return rows


def plot(doc: dict) -> bytes:
    """PNG: the coefficient against lambda per curve (each line thin, the median bold, the line
    and step fits of the median dashed and solid), and the patch effects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from interp.overlays import fig_to_png

    rows = site_rows(doc)
    lam = np.asarray(doc["lambdas"])
    cols = 4
    n_panels = len(rows) + 1
    fig, axes = plt.subplots(
        (n_panels + cols - 1) // cols, cols, figsize=(3.2 * cols, 2.5 * ((n_panels + 3) // cols))
    )
    axes = axes.ravel()
    grid = np.linspace(0, 1, 101)
    for ax, row in zip(axes, rows, strict=False):
        c = _line_coefficients(row["block"])
        for line in c:
            ax.plot(lam, line, color="#99a", lw=0.8, marker=".", ms=3)
        if len(c):
            med = np.median(c, axis=0)
            fit = F.compare(lam, med)
            lin, st = fit["linear"], fit["step"]
            ax.plot(lam, med, color="k", lw=1.6)
            ax.plot(grid, lin["intercept"] + lin["slope"] * grid, "--", color="tab:blue", lw=1)
            s = 0.5 * (1 + np.tanh((grid - st["threshold"]) / (2 * st["w"])))
            ax.plot(grid, st["low"] + (st["high"] - st["low"]) * s, color="tab:red", lw=1)
        verdict = "snaps" if row["snaps"] else "graded"
        ax.set_title(
            f"{row['name']}\n{verdict} ({row['snap_lines']}/{row['lines']} lines)", fontsize=8
        )
        ax.set_ylim(-0.3, 1.3)
        ax.tick_params(labelsize=7)
    ax = axes[len(rows)]
    patches = doc["patching"]["patches"]
    names = list(patches)
    x = np.arange(len(names))
    for k, (what, colour) in enumerate((("chunk", "#88a"), ("aim", "#a88"), ("grasp", "#8a8"))):
        vals = [patches[nm][what]["pooled"] for nm in names]
        vals = [np.nan if v is None else v for v in vals]
        ax.barh(x + (k - 1) * 0.27, vals, height=0.27, color=colour, label=what)
    ax.set_yticks(x, [nm.replace("decoder/layer_0/", "") for nm in names], fontsize=6)
    ax.axvline(0, color="k", lw=0.5)
    ax.axvline(1, color="k", lw=0.5, ls=":")
    ax.set_title("patch midpoint -> endpoint (1: all the way)", fontsize=8)
    ax.legend(fontsize=6)
    for ax in axes[len(rows) + 1 :]:
        ax.axis("off")
    fig.supxlabel("lambda (0: location A, 1: location B)", fontsize=9)
    fig.supylabel("coefficient between the endpoint activations", fontsize=9)
    fig.tight_layout()
    return fig_to_png(fig)


def _fmt(v, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def add_section(page, doc: dict, png: bytes) -> None:
    """The snap study's section of an `interp.page.Page`: the rule's half, tables, figure."""
    page.section("Where it snaps", anchor="snap")
    rule = doc["mlp_rule"]
    calib = doc["calibration"]["valid"]
    status = "supported" if rule["snap_at_mlp_output"] else "not-supported"
    if not calib:
        status = "partial"
    answer = "yes" if rule["snap_at_mlp_output"] else "no"
    doubt = "" if calib else " The calibration failed, so the instrument is in doubt."
    page.verdict(
        f"The snap sits at the decoder MLP's output: {answer} ({rule['reason']}).{doubt}", status
    )
    lines = ", ".join(f"{p['a']}-{p['b']} ({100 * p['length_m']:.1f} cm)" for p in doc["pairs"])
    page.paragraph(
        f"Lines between training locations {lines}; cube starts at lambda "
        f"{', '.join(f'{x:g}' for x in doc['lambdas'])}, captured at ticks {doc['ticks']}. Each "
        "site's activation is placed between the line's endpoint activations (coefficient 0 at "
        "A, 1 at B, residual: distance off that segment) and fitted with a line and a step "
        "(interp.snap_fit; the rule was fixed before the runs). This is half of the rule for "
        "naming the decoder MLP the lookup table; the other half (decoder_mlp fine-tunes beating "
        "action_head and a size-matched control) is interp.finetune_compare's. The model here "
        "is the one checkpoint named in the command."
    )
    rows = [
        [
            r["name"],
            f"{r['snap_lines']}/{r['lines']}",
            _fmt(r["delta_bic"], 1),
            _fmt(r["max_jump"]),
            _fmt(r["residual"]),
            _fmt(r["threshold"]),
            _fmt(r["probe_r2"]),
        ]
        for r in site_rows(doc)
    ]
    page.table(
        [
            "curve",
            "snaps on lines",
            "median dBIC (step - line)",
            "median max jump",
            "median residual",
            "median step threshold",
            "cube-position probe R2 (held-out lines)",
        ],
        rows,
    )
    patch_rows = []
    for name, eff in doc["patching"]["patches"].items():
        cells = []
        for w in ("chunk", "aim", "grasp"):
            e, vals = eff[w], [v for v in eff[w]["values"] if v is not None]
            spread = f" ({min(vals):.2f} to {max(vals):.2f})" if vals else ""
            cells.append("" if e["pooled"] is None else f"{e['pooled']:.2f}{spread}")
        patch_rows.append([name, *cells])
    page.table(
        ["patch (midpoint into endpoint)", "first chunk", "aim point", "grasp point (rollout)"],
        patch_rows,
        caption="pooled over lines and both endpoints (each case's range in brackets; a case "
        "whose midpoint run acts like its endpoint has a tiny gap and a wild ratio); 1 = moves "
        "all the way to the midpoint run's, 0 = not at all",
    )
    success = sum(s["success"] for s in doc["starts"])
    page.paragraph(
        f"Rollouts from the {len(doc['starts'])} starts: {success} succeed. Wall time "
        f"{doc['wall_time_s']:.0f} s."
    )
    page.figure(png, "Coefficient against lambda per site; patch effects")
    page.command(doc["command"])
