"""Page assembly: matplotlib figures as inline PNGs, tables, one self-contained HTML file.

The page has no script and loads nothing: every image is a ``data:`` URI, so it opens
offline, from an object store or as an e-mail attachment, and renders the same anywhere.
Each plot is an ``<img class="plot" data-plot="NAME">`` so a browser test can count them.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1d2733;background:#fff}
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #dde3ea}
.meta{color:#5b6b7c;font-size:.9em}.plot{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:.88em;margin:8px 0}th,td{padding:4px 10px;border-bottom:1px solid #e6ebf0;
text-align:right}th{background:#f3f6f9}td:first-child,th:first-child{text-align:left}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.ok{background:#2e7d32}.warn{background:#ef6c00}.bad{background:#c62828}.note{color:#5b6b7c;font-size:.88em}
"""


def figure(width: float = 10.0, height: float = 4.0) -> Figure:
    """A new figure that does not touch pyplot's global state (safe in any thread or worker)."""
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_data_uri(fig: Figure, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Section:
    """A titled block of the page: optional paragraphs, plots and tables, in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)  # trusted HTML built by this package
    plots: list[tuple[str, Figure]] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)


def esc(value: object) -> str:
    return html.escape(str(value))


def badge(text: str, kind: str) -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def table_html(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    def cell(v: object) -> str:
        return esc(float_format.format(v)) if isinstance(v, float) else esc(v)

    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>"
                   for r in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render_page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole HTML document."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{esc(title)}</h1>", f'<p class="meta">{esc(subtitle)} · generated {now}</p>']
    for s in sections:
        body.append(f"<section><h2>{esc(s.title)}</h2>")
        body.extend(f"<p>{p}</p>" for p in s.paragraphs)
        for name, fig in s.plots:
            body.append(f'<img class="plot" data-plot="{esc(name)}" alt="{esc(name)}" src="{png_data_uri(fig)}">')
        body.extend(table_html(t) for t in s.tables)
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_page(text: str, path: str | os.PathLike[str]) -> Path:
    """Write atomically: a reader sees the old report or the new one, never half of one."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote report %s (%d bytes)", dest, len(text))
    return dest
