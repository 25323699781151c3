"""The HTML page of one `interp.freeze_finetune` run: success before and after, per cube
location, and the parameter change by module (`write_report`)."""

from __future__ import annotations

import html
from pathlib import Path


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
