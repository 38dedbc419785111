"""Self-contained HTML pages of Plotly figures and tables: plotly.js inlined, no network needed."""

from __future__ import annotations

import html
import importlib.resources
import json
import math
from typing import Any

from covshift.errors import CovshiftError
from covshift.wire import Json

# Points per plotted series: evenly strided, always keeping the first and the last.
MAX_POINTS = 600
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")

Figure = dict[str, Any]


class ReportError(CovshiftError):
    """A report cannot be written (plotly, which provides plotly.js, is not installed)."""


def plotly_js() -> str:
    """The plotly.min.js that ships inside the plotly Python package."""
    try:
        return (importlib.resources.files("plotly") / "package_data" / "plotly.min.js").read_text(
            encoding="utf-8"
        )
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ReportError(
            "report: install plotly (pip install plotly) to write report.html"
        ) from exc


def config_text(config: dict[str, Json], leave_out: str = "") -> str:
    """The settings a reader needs to place a figure, as one line."""
    keys = ("depth", "width", "activation", "init", "lr", "batch_size", "steps", "seed")
    return ", ".join(f"{k} {config[k]}" for k in keys if k != leave_out) + "."


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
    traces: list[Figure], title: str, x: str, y: str, x_type: str = "linear", y_type: str = "linear"
) -> Figure:
    return {
        "data": traces,
        "layout": {
            "title": {"text": title, "font": {"size": 14}},
            "height": 360,
            "xaxis": {"title": {"text": x}, "type": x_type},
            "yaxis": {"title": {"text": y}, "type": y_type},
            "margin": {"l": 60, "r": 20, "t": 50, "b": 45},
        },
    }


def table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h2>{html.escape(caption)}</h2><table><tr>{head}</tr>{body}</table>"


def page(title: str, intro: str, figures: list[Figure], sections: list[str]) -> str:
    specs = json.dumps(figures, allow_nan=False).replace("</", "<\\/")
    divs = "".join(f'<div id="figure-{i}" class="figure"></div>' for i in range(len(figures)))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:right}}th{{background:#f4f4f4}}.figure{{margin:1em 0}}</style>
<script>{plotly_js()}</script></head><body>
<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{divs}{"".join(sections)}
<p><small>Written by covshift from its wire records (docs/protocol.md).</small></p>
<script>const figures = {specs};
figures.forEach((f, i) => Plotly.newPlot("figure-" + i, f.data, f.layout, {{responsive: true}}));
</script></body></html>
"""
