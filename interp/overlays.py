"""Figures of ACT's attention: maps over the camera images, and per layer/head summaries.

Every figure is matplotlib (Agg, no display) rendered to PNG bytes at a size fixed by its layout
(`overlay_figsize`), so a report can inline them and a test can check them. Maps are per-token
values over the encoder tokens (N,), e.g. the decoder's head-mean cross-attention averaged over
chunk queries and frames; `TokenIndex.to_grid` turns each camera's part into its (h, w) feature
map, drawn as blocks over the image (nearest-neighbour upsampling: one block per token, because
a smooth interpolation would show detail the h x w tokens do not have).

    png = overlay_figure(rows, tokens, kinds=("cross-attention", "rollout"))
    png = summary_figure(site_summaries, baselines)
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence

import cv2
import matplotlib

matplotlib.use("Agg")  # headless: figures only ever go to PNG bytes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from interp.tokens import TokenIndex  # noqa: E402

DPI = 100
PANEL_WIDTH = 3.2  # inches per image panel
CMAP = "inferno"


def fig_to_png(fig) -> bytes:
    """Renders `fig` to PNG bytes at its own size (no tight bbox, so the size is predictable)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def overlay_rgb(
    image: np.ndarray, grid: np.ndarray, vmax: float | None = None, alpha: float = 0.5
) -> np.ndarray:
    """An (h, w) token map blended over an image at the image's own size.

    Args:
        image: (H, W, 3) uint8 RGB.
        grid: (h, w) non-negative values, one per feature-map cell.
        vmax: value mapped to the top of the colour map (default: the map's max).
        alpha: weight of the colour map.

    Returns:
        (H, W, 3) uint8 RGB, each cell a block of ~H/h x W/w pixels.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {image.shape}")
    grid = np.asarray(grid, np.float64)
    top = float(grid.max()) if vmax is None else float(vmax)
    scaled = np.clip(grid / top if top > 0 else grid * 0, 0, 1)
    up = cv2.resize(scaled, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    colour = (plt.get_cmap(CMAP)(up)[..., :3] * 255).astype(np.float64)
    return ((1 - alpha) * image + alpha * colour).round().astype(np.uint8)


@dataclasses.dataclass
class OverlayRow:
    """One row of `overlay_figure`: a task phase (or any frame group).

    Attributes:
        label: e.g. "carry (12 frames)".
        images: camera -> (H, W, 3) uint8, the frame the maps are drawn over.
        maps: kind (e.g. "cross-attention") -> (N,) per-token values.
    """

    label: str
    images: Mapping[str, np.ndarray]
    maps: Mapping[str, np.ndarray]


def overlay_figsize(n_rows: int, n_cols: int, image_hw: Sequence[int]) -> tuple[float, float]:
    """Figure size (inches) of `overlay_figure`; its PNG is this times `DPI` pixels."""
    h, w = image_hw
    return (PANEL_WIDTH * n_cols + 0.8, (PANEL_WIDTH * h / w + 0.55) * n_rows + 0.5)


def overlay_figure(
    rows: Sequence[OverlayRow], tokens: TokenIndex, kinds: Sequence[str], title: str = ""
) -> bytes:
    """Token maps over each camera: a row per phase, a column per (kind, camera).

    Each kind has one colour scale shared by its rows and cameras (so phases compare), labelled
    as the share of attention per token; panel titles give the camera's total share, row labels
    the latent and state shares.

    Returns:
        PNG bytes of `overlay_figsize(len(rows), len(kinds) * cameras, image size)` x DPI.
    """
    if not rows:
        raise ValueError("overlay_figure needs at least one row")
    cams = tokens.cameras
    image_hw = np.asarray(rows[0].images[cams[0]]).shape[:2]
    n_cols = len(kinds) * len(cams)
    fig, axes = plt.subplots(
        len(rows),
        n_cols,
        squeeze=False,
        layout="constrained",
        figsize=overlay_figsize(len(rows), n_cols, image_hw),
    )
    for k, kind in enumerate(kinds):
        vmax = max(float(np.max(tokens.to_grid(r.maps[kind], c))) for r in rows for c in cams)
        for i, row in enumerate(rows):
            values = np.asarray(row.maps[kind], np.float64)
            for j, cam in enumerate(cams):
                ax = axes[i, k * len(cams) + j]
                img = np.asarray(row.images[cam])
                ax.imshow(img)
                hh, ww = img.shape[:2]
                mappable = ax.imshow(
                    tokens.to_grid(values, cam),
                    cmap=CMAP,
                    alpha=0.55,
                    vmin=0,
                    vmax=vmax,
                    extent=(0, ww, hh, 0),
                    interpolation="nearest",
                )
                share = values[tokens.camera(cam)].sum()
                ax.set_title(f"{kind}, {cam}: {100 * share:.0f}% of mass", fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0 and k == 0:
                    ax.set_ylabel(
                        f"{row.label}\nlatent {100 * values[tokens.latent]:.1f}%, "
                        f"state {100 * values[tokens.state]:.1f}%",
                        fontsize=9,
                    )
        cols = axes[:, k * len(cams) : (k + 1) * len(cams)]
        fig.colorbar(
            mappable, ax=cols.ravel().tolist(), shrink=0.8, label=f"{kind}: share per token"
        )
    if title:
        fig.suptitle(title, fontsize=11)
    return fig_to_png(fig)


def _grouped_bars(ax, sites: Mapping[str, dict], value, baseline=None, ylabel: str = ""):
    """One group of bars per site, one bar per head plus the head mean; baselines as dashes."""
    names = list(sites)
    entries = [sites[n]["heads"] + [sites[n]["head_mean"]] for n in names]
    n_bars = len(entries[0])  # heads + the head mean; one model, so the same for every site
    width = 0.8 / n_bars
    for h in range(n_bars):
        xs = [x - 0.4 + (h + 0.5) * width for x in range(len(names))]
        mean = h == n_bars - 1
        ax.bar(
            xs,
            [value(e[h]) for e in entries],
            width,
            label="head mean" if mean else f"head {h}",
            color="0.3" if mean else f"C{h}",
        )
    if baseline is not None:
        for x, name in enumerate(names):
            b = baseline(name)
            if b is not None:
                ax.hlines(
                    b,
                    x - 0.45,
                    x + 0.45,
                    colors="crimson",
                    linestyles="--",
                    label="uniform attention" if x == 0 else None,
                )
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def summary_figure(
    sites: Mapping[str, dict], baselines: Mapping[str, dict], title: str = ""
) -> bytes:
    """Per layer and head: tokens for 50% / 90% of the mass, entropy, latent and state shares.

    Args:
        sites: short site name (e.g. "enc L0") -> `attention.summarise` output.
        baselines: the same names -> `attention.uniform_baseline` output.

    Returns:
        PNG bytes (12 x 8 inches at DPI).
    """
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), layout="constrained")
    for ax, level in ((axes[0, 0], "k50"), (axes[0, 1], "k90")):
        _grouped_bars(
            ax,
            sites,
            lambda e, lv=level: e[lv]["fraction_mean"],
            lambda n, lv=level: baselines[n][lv]["fraction"],
            f"fraction of keys for {level[1:]}% of the mass",
        )
        ax.set_title(
            f"Keys holding {level[1:]}% of each query's attention (mean over queries and frames)",
            fontsize=10,
        )
    _grouped_bars(
        axes[1, 0], sites, lambda e: e["entropy"]["mean"], lambda n: 1.0, "entropy / log K"
    )
    axes[1, 0].set_title("Normalised entropy (1 = uniform)", fontsize=10)
    enc = {n: s for n, s in sites.items() if "share_state" in s["head_mean"]}
    ax = axes[1, 1]
    if enc:
        _grouped_bars(
            ax,
            enc,
            lambda e: e["share_state"]["mean"],
            lambda n: baselines[n]["share_state"],
            "share of attention",
        )
        latent = [enc[n]["head_mean"]["share_latent"]["mean"] for n in enc]
        ax.plot(range(len(enc)), latent, "kD", label="latent token (head mean)")
    ax.set_title("Share of attention on the state token, per head", fontsize=10)
    for a in axes.ravel():
        a.set_ylim(bottom=0)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[0, 0].legend(handles, labels, fontsize=8, ncol=2)
    axes[1, 1].legend(fontsize=8, ncol=2)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig_to_png(fig)


def per_query_figure(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    n_keys: int,
    baseline: Mapping,
    title: str = "",
) -> bytes:
    """Decoder chunk-query profiles: tokens for 90% of the mass and group shares per chunk step.

    Args:
        curves: kind (e.g. "cross-attention L0", "rollout L0") -> `attention.per_query` output.
        n_keys: N, to plot counts as fractions.
        baseline: `attention.uniform_baseline(N, tokens)`.

    Returns:
        PNG bytes (12 x 4 inches at DPI).
    """
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    groups = [k for k in baseline if k.startswith("share_")]
    for m, (kind, c) in enumerate(curves.items()):
        style = ("-", "--", ":", "-.")[m % 4]
        ax0.plot(np.asarray(c["k90"]) / n_keys, style, label=kind)
        for i, g in enumerate(groups):
            ax1.plot(c[g], style, color=f"C{i}", label=f"{g[6:]} ({kind})")
    ax0.axhline(baseline["k90"]["fraction"], color="crimson", ls="--", label="uniform", zorder=1)
    ax0.set(
        xlabel="chunk step (decoder query)",
        ylabel="fraction of tokens for 90% of mass",
        title="Keys holding 90% of each chunk query's attention (head mean)",
        ylim=(0, 1),
    )
    ax1.set(
        xlabel="chunk step (decoder query)",
        ylabel="share of mass",
        title="Where each chunk query's attention goes (head mean)",
        ylim=(0, 1),
    )
    ax0.legend(fontsize=8)
    ax1.legend(fontsize=7, ncol=2)
    for a in (ax0, ax1):
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig_to_png(fig)
