"""A self-contained HTML page for interpretability reports: sections, tables, figures, trees.

Everything a page shows is inside the one file: PNG figures are inlined as base64 `data:` URLs and
treescope renders carry their own scripts, so a report can be mailed, archived next to its JSON
or opened from a CI artifact with no server and no network.

    page = Page("How the policy decides", subtitle="runs/sim_default, step 6000")
    page.section("Claim 1", "Backbone features carry the cube position.")
    page.table(["target", "R^2"], [["cube x", "0.97"]])
    page.figure(png_bytes, "Cross-attention on the top camera")
    page.command("python -m interp.report --checkpoint runs/sim_default --out runs/report")
    page.write("runs/report/report.html")
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #1d1d1f; }
h1 { margin-bottom: 0.1em; } .subtitle { color: #555; margin-top: 0; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 13px; }
pre.cmd { background: #f6f8fa; padding: 0.5em 0.8em; overflow-x: auto; font-size: 13px; }
.verdict { padding: 0.5em 0.8em; border-left: 4px solid #888; background: #fafafa; }
.verdict.supported { border-color: #2a7; } .verdict.not-supported { border-color: #c33; }
.verdict.partial { border-color: #d90; }
.tree { border: 1px solid #eee; padding: 0.3em; overflow-x: auto; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape(str(value))


class Page:
    """An HTML document built section by section; `write` saves it."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self._parts = [f"<h1>{html.escape(title)}</h1>"]
        if subtitle:
            self._parts.append(f'<p class="subtitle">{html.escape(subtitle)}</p>')
        self.n_figures = 0

    def section(self, heading: str, text: str = "", *, level: int = 2, anchor: str = "") -> None:
        """A heading and an optional paragraph (plain text, escaped)."""
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self._parts.append(f"<h{level}{ident}>{html.escape(heading)}</h{level}>")
        if text:
            self.paragraph(text)

    def paragraph(self, text: str) -> None:
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def verdict(self, text: str, status: str) -> None:
        """A highlighted measured statement; `status` is supported | not-supported | partial."""
        if status not in ("supported", "not-supported", "partial"):
            raise ValueError(f"status must be supported, not-supported or partial, got {status!r}")
        self._parts.append(
            f'<p class="verdict {status}"><b>{status.replace("-", " ")}:</b> '
            f"{html.escape(text)}</p>"
        )

    def table(
        self, header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = ""
    ) -> None:
        """A table; floats print with 3 significant digits, ints with thousands separators."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self._parts.append(
            f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def figure(self, png: bytes, caption: str, *, width: int | None = None) -> None:
        """A PNG image inlined as a data URL, with its caption."""
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError(f"figure {caption!r}: not PNG bytes")
        self.n_figures += 1
        data = base64.b64encode(png).decode("ascii")
        size = f' width="{width}"' if width else ""
        self._parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}"{size}>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def command(self, cmd: str) -> None:
        """The exact command behind the numbers around it."""
        self._parts.append(f'<pre class="cmd">{html.escape(cmd)}</pre>')

    def tree(self, value: Any, caption: str = "") -> None:
        """A treescope render (a param tree, a captured cache), collapsible in the browser."""
        import treescope  # late: treescope's import is slow and only reports need it

        rendered = treescope.render_to_html(value, roundtrip_mode=False, compressed=True)
        if caption:
            self._parts.append(f"<p>{html.escape(caption)}</p>")
        self._parts.append(f'<div class="tree">{rendered}</div>')

    def raw(self, fragment: str) -> None:
        """Trusted HTML made by this package (e.g. an SVG chart)."""
        self._parts.append(fragment)

    def html(self) -> str:
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head>"
            "<body>\n" + "\n".join(self._parts) + "\n</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path
