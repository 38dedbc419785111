"""The self-contained HTML report of a run, from its hello, frames and events.

One file that opens offline: plotly.js is inlined from the plotly package, the
figures are Plotly JSON specs, and a table holds the numbers. Everything is read
from the wire records (docs/protocol.md), so the same function serves a finished
headless run, the server's live or finished runs, and a replay of frames.jsonl.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from typing import Any

from covshift.errors import CovshiftError
from covshift.wire import MISFIT, Json

from .page import Figure, columns, config_text, figure, line, page, table, thin, variant_color

log = logging.getLogger(__name__)

BAND = (15, 50, 85)  # Ioffe & Szegedy's Figure 1 percentiles


class RunSeries:
    """The few series a run report plots, gathered from records as they stream by."""

    def __init__(self, hello: dict[str, Json]) -> None:
        self.hello = hello
        order = list(hello["percentiles"])
        self.band_index = [order.index(p) for p in BAND]
        self.variants: dict[str, dict[str, list[Any]]] = {v: {} for v in hello["variants"]}
        self.events: list[dict[str, Json]] = []
        self.misfits = 0  # records skipped for their shape

    def add(self, record: dict[str, Json]) -> None:
        """Take one record; one of the wrong shape (a damaged file) is skipped and counted."""
        try:
            if record["type"] == "event":
                if not isinstance(record["step"], int) or not isinstance(record["kind"], str):
                    raise TypeError("an event needs an integer step and a kind")
                self.events.append(record)
            elif record["type"] == "frame":
                for variant, entry in record["variants"].items():
                    self._add_entry(self.variants[variant], record["step"], entry)
        except MISFIT:
            self.misfits += 1

    def _add_entry(self, series: dict[str, list[Any]], step: int, entry: dict[str, Json]) -> None:
        def put(name: str, value: Any) -> None:
            series.setdefault(name, []).append((step, value))

        if "loss" not in entry:
            # Sat out this frame (skipped at batch size 1, or diverged): a gap in its band,
            # not a straight line bridging it.
            put("band", None)
        else:
            put("loss", entry["loss"])
            put("acc", entry["acc"])
            last = entry["layers"][-1]
            percentiles = last["taps"]["act_input"]["percentiles"]
            put("band", [percentiles[i] for i in self.band_index])
            if last["drift"] is not None:
                put("w1", last["drift"]["w1"])
                put("w1_start", last["drift"].get("w1_start"))
        for name, value in (entry.get("test") or {}).items():
            put("test_" + name, value)
        if "ics" in entry:
            put("grad_diff", entry["ics"]["layers"][-1]["grad_diff"])
            put("grad_cos", entry["ics"]["layers"][-1]["grad_cos"])
            for name in ("loss_range", "grad_predictiveness", "beta_smoothness"):
                put(name, entry["ics"]["landscape"][name])


def render_run_report(
    hello: dict[str, Json], records: Iterable[dict[str, Json]], title: str | None = None
) -> str:
    """The report of one run: the hello record, then its frames and events in order."""
    series = RunSeries(hello)
    for record in records:
        series.add(record)
    return _render(series, title)


def _render(series: RunSeries, title: str | None) -> str:
    hello, dataset = series.hello, series.hello["dataset"]
    intro = (
        f"{len(hello['variants'])} variants trained in lockstep on {dataset['name']} "
        f"({dataset['n_train']} training, {dataset['n_test']} test examples); "
        + config_text(hello["config"])
    )
    figures = [*_band_figures(series), *_curve_figures(series)]
    return page(title or "covshift run", intro, figures, [_run_table(series), _events(series)])


def _band_figures(series: RunSeries) -> list[Figure]:
    """Ioffe & Szegedy Figure 1(b, c): the last layer's activation input, one panel per variant,
    every panel on the same y range (so a narrow band looks narrow), gaps where it sat out."""
    panels = []
    for variant, data in series.variants.items():
        points = thin(data.get("band", []))
        steps = [s for s, _ in points]
        low, mid, high = ([None if b is None else b[i] for _, b in points] for i in range(3))
        panels.append((variant, steps, low, mid, high))
    finite = [
        v
        for *_, low, _, high in panels
        for v in (*low, *high)
        if v is not None and math.isfinite(v)
    ]
    shared = [min(finite), max(finite)] if finite else None
    figures = []
    for k, (variant, steps, low, mid, high) in enumerate(panels):
        color = variant_color(variant, k)
        traces = [
            {**line(steps, high, "85th", color, width=0), "showlegend": False},
            {**line(steps, low, "15–85th percentile band", color, width=0), "fill": "tonexty"},
            line(steps, mid, "median", color),
        ]
        label = series.hello["variants"][variant]["label"]
        figures.append(
            figure(
                traces,
                f"{variant} ({label}): last layer's activation input, 15/50/85th "
                "percentiles of each batch, all units pooled",
                "step",
                "activation input",
                y_range=shared,
            )
        )
    return figures


def _curve_figures(series: RunSeries) -> list[Figure]:
    plots = [
        ("training loss (this batch)", [("loss", "")], "loss", "log"),
        (
            "test accuracy: eval mode (solid), train mode (dash), population stats (dot)",
            [("test_acc", ""), ("test_acc_train_mode", "dash"), ("test_acc_population", "dot")],
            "accuracy",
            "linear",
        ),
        (
            "ICS (a): W1 of the last layer's input to its first (solid) and previous frame (dot)",
            [("w1_start", ""), ("w1", "dot")],
            "W1",
            "linear",
        ),
        (
            "ICS (b): ||G - G'|| of the output layer (Santurkar et al. Def. 2.1)",
            [("grad_diff", "")],
            "||G - G'||",
            "log",
        ),
        ("ICS (b): cos(G, G') of the output layer", [("grad_cos", "")], "cosine", "linear"),
        ("landscape: loss range along the gradient", [("loss_range", "")], "loss range", "log"),
        (
            "landscape: gradient predictiveness max ||g - g'||",
            [("grad_predictiveness", "")],
            "||Δg||",
            "log",
        ),
        ("landscape: effective β-smoothness", [("beta_smoothness", "")], "β", "log"),
    ]
    figures = []
    for title, names, axis, scale in plots:
        traces = [
            {
                **line(*columns(data[name]), f"{variant} {name}", variant_color(variant, k)),
                "line": {"color": variant_color(variant, k), "dash": dash or "solid"},
            }
            for k, (variant, data) in enumerate(series.variants.items())
            for name, dash in names
            if data.get(name)
        ]
        if traces:
            figures.append(figure(traces, title, "step", axis, y_type=scale))
    return figures


def _run_table(series: RunSeries) -> str:
    header = [
        "variant",
        "train loss",
        "train acc",
        "test acc",
        "acc train mode",
        "acc population",
        "act. input 15/50/85 at start",
        "at end",
        "W1 to start (end)",
    ]
    rows = []
    for variant, data in series.variants.items():
        band = data.get("band", [])
        rows.append(
            [
                variant,
                *(
                    _last(data, name)
                    for name in (
                        "loss",
                        "acc",
                        "test_acc",
                        "test_acc_train_mode",
                        "test_acc_population",
                    )
                ),
                _band_text(band[0][1] if band else None),
                _band_text(band[-1][1] if band else None),
                _last(data, "w1_start"),
            ]
        )
    return table("Final numbers", header, rows)


SETTING_NAMES = {"lr": "learning rate", "batch_size": "batch size", "bn_momentum": "BN momentum"}


def event_text(event: dict[str, Json]) -> str:
    """One event in words, as the page says it (table() escapes it)."""
    kind = event.get("kind")

    def shown(value: Json) -> str:
        if value is None:
            return "cumulative"  # BN momentum null: the equal-weight average
        return f"{value:g}" if isinstance(value, float) else str(value)

    if kind in SETTING_NAMES:
        name, before, after = SETTING_NAMES[str(kind)], event.get("previous"), event.get("value")
        return f"{name} {shown(before)} → {shown(after)}"
    if kind == "state":
        message = event.get("message")
        return f"run {event.get('state')}" + (f": {message}" if message else "")
    if kind == "skipped":
        names = ", ".join(str(v) for v in event.get("variants") or [])
        return f"{names} skipped: {event.get('reason', '')}"
    if kind == "diverged":
        return f"{event.get('variant')} diverged: {event.get('reason', '')}"
    rest = {k: v for k, v in event.items() if k not in ("v", "type", "step", "kind")}
    return json.dumps(rest)


def _events(series: RunSeries) -> str:
    rows = [[str(e["step"]), str(e["kind"]), event_text(e)] for e in series.events]
    return table("Events", ["step", "kind", "what happened"], rows) if rows else ""


def _band_text(band: list[float | None] | None) -> str:
    if not band:
        return "–"
    return " / ".join("–" if b is None else f"{b:.3g}" for b in band)


def _last(data: dict[str, list[Any]], name: str) -> str:
    values = data.get(name)
    if not values or values[-1][1] is None:
        return "–"
    return f"{values[-1][1]:.4g}"


def report_html(run_id: str, lines: Iterable[str]) -> str:
    """The self-contained report of a run's message lines, as frames.jsonl holds them. Each
    record is reduced to the few numbers plotted as it is read and then let go, so memory
    follows the points kept, not the lines read."""
    series: RunSeries | None = None
    for text in lines:
        record = json.loads(text)
        if record.get("type") == "hello":
            try:
                series = RunSeries(record)
            except MISFIT:
                raise DamagedRun(f"run {run_id}: its hello is damaged; no report") from None
        elif series is not None:
            series.add(record)
    if series is None:
        raise NoDataYet(f"run {run_id} has no data yet (its worker is still loading)")
    if series.misfits:
        log.warning("run %s: %d damaged records left out of its report", run_id, series.misfits)
    try:
        return _render(series, title=f"covshift run {run_id}")
    except MISFIT:
        raise DamagedRun(f"run {run_id}: its hello is damaged; no report") from None


def report_filename(run_id: str) -> str:
    return f"covshift-{run_id}-report.html"


class NoDataYet(CovshiftError):
    """The run's hello has not arrived: nothing to report yet."""


class DamagedRun(CovshiftError):
    """The run's records cannot make a report (its hello is damaged)."""
