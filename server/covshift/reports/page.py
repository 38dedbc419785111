"""Self-contained HTML pages of Plotly figures and tables: plotly.js inlined, no network needed.

A report holds values read from a run's records, which anyone who can write the log
directory can plant, and it is opened from disk, where no server sends a policy. So every
value is escaped (HTML text in the page; Plotly's text, which it reads as HTML; the figures'
JSON inside its script), and the page carries its own Content-Security-Policy that runs only
its two inlined scripts, by hash.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
from typing import Any

from covshift.errors import CovshiftError
from covshift.page_files import PLOTLY_BASIC, plotly_basic
from covshift.variants import VARIANTS
from covshift.wire import Json

# Points per plotted series: evenly strided, always keeping the first and the last.
MAX_POINTS = 600
# For names the registry does not know (a watched model's own): after its colours.
EXTRA_COLORS = ("#7f7f7f", "#bcbd22", "#8c564b", "#e377c2")


def variant_color(variant: str, index: int = 0) -> str:
    """A variant's one colour, the page's (covshift.variants), so a report reads like the page."""
    info = VARIANTS.get(variant)
    return info.color if info is not None else EXTRA_COLORS[index % len(EXTRA_COLORS)]


Figure = dict[str, Any]


class ReportError(CovshiftError):
    """A report cannot be written (the page's plotly.js, which it inlines, is missing)."""


@functools.cache  # 1.2 MB, read and hashed once per process
def plotly_js() -> str:
    """The page's own plotly.js (its basic bundle: every report draws scatter traces only)."""
    found = plotly_basic()
    if found is None:
        raise ReportError(
            f"report: frontend/vendor/{PLOTLY_BASIC} is missing (a damaged install):"
            " reinstall covshift to write report.html"
        )
    return found.read_text(encoding="utf-8")


def config_text(config: dict[str, Json], leave_out: str = "") -> str:
    """The settings a reader needs to place a figure, as one line."""
    keys = ("arch", "depth", "width", "activation", "init", "lr", "batch_size", "steps", "seed")
    return ", ".join(f"{k} {config[k]}" for k in keys if k != leave_out and k in config) + "."


def thin(points: list[Any]) -> list[Any]:
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    kept = points[::stride]
    return kept if kept[-1] is points[-1] else [*kept, points[-1]]


def columns(points: list[Any]) -> tuple[list[Any], list[Any]]:
    thinned = thin(points)
    return [s for s, _ in thinned], [v for _, v in thinned]


def line(xs: list[Any], ys: list[Any], name: str, color: str, width: float = 2) -> Figure:
    return {
        "type": "scatter",
        "mode": "lines",
        "x": xs,
        "y": ys,
        "name": name,
        "line": {"color": color, "width": width},
    }


def figure(
    traces: list[Figure],
    title: str,
    x: str,
    y: str,
    x_type: str = "linear",
    y_type: str = "linear",
    y_range: list[float] | None = None,
    marks: list[int] | None = None,
) -> Figure:
    """A figure spec; `marks` are x values (steps of setting changes) drawn as dashed lines."""
    yaxis: dict[str, Any] = {"title": {"text": y}, "type": y_type}
    if y_range is not None:  # panels compared side by side share it
        yaxis["range"] = y_range
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": step,
            "x1": step,
            "y0": 0,
            "y1": 1,
            "line": {"color": "#666", "width": 1, "dash": "dash"},
        }
        for step in marks or []
    ]
    return {
        "data": traces,
        "layout": {
            "title": {"text": title, "font": {"size": 14}},
            "height": 360,
            "xaxis": {"title": {"text": x}, "type": x_type},
            "yaxis": yaxis,
            "margin": {"l": 60, "r": 20, "t": 50, "b": 45},
            "shapes": shapes,
        },
    }


def table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of plain text cells (escaped here, so callers pass values as they are)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<h2>{html.escape(caption)}</h2><table><tr>{head}</tr>{body}</table>"


def plotly_text(value: Any) -> Any:
    """value with every string escaped as HTML text: Plotly renders titles, names, labels and
    hover text as a subset of HTML (links included), and shows the entities as characters."""
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, dict):
        return {key: plotly_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plotly_text(item) for item in value]
    return value


def script_json(value: Any) -> str:
    """JSON that cannot end or change the script element it is in: <, > and & only occur in
    JSON strings, where \\u escapes read the same to JavaScript (so no "</script>" and no
    "<!--", which would make the parser miss the real end tag)."""
    text = json.dumps(value, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@functools.cache
def plotly_hash() -> str:
    return script_hash(plotly_js())


def content_security_policy(script_hashes: list[str]) -> str:
    """The policy a report carries: nothing from anywhere, its own scripts by hash; inline
    styles and data:/blob: images, which Plotly draws with and exports PNGs through."""
    sources = " ".join(script_hashes)
    return (
        f"default-src 'none'; script-src {sources}; style-src 'unsafe-inline'; "
        "img-src data: blob:; base-uri 'none'; form-action 'none'"
    )


def page(
    title: str,
    intro: str,
    figures: list[Figure],
    sections: list[str],
    language: str = "en",
    footer: str = "Written by covshift from its wire records (docs/protocol.md).",
) -> str:
    """The whole report; `sections` are HTML built with `table` (their values escaped)."""
    draw = (
        f"const figures = {script_json(plotly_text(figures))};\n"
        'figures.forEach((f, i) => Plotly.newPlot("figure-" + i, f.data, f.layout, '
        "{responsive: true}));\n"
    )
    policy = content_security_policy([plotly_hash(), script_hash(draw)])
    divs = "".join(f'<div id="figure-{i}" class="figure"></div>' for i in range(len(figures)))
    return f"""<!doctype html>
<html lang="{html.escape(language)}"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:right}}th{{background:#f4f4f4}}.figure{{margin:1em 0}}</style>
<script>{plotly_js()}</script></head><body>
<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{divs}{"".join(sections)}
<p><small>{html.escape(footer)}</small></p>
<script>{draw}</script></body></html>
"""
