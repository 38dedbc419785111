"""The self-contained HTML report of a run, from its hello, frames and events.

One file that opens offline: the page's plotly.js (its basic bundle) is inlined, the
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
from covshift.wire import MISFIT, Json, tap_of

from .page import Figure, columns, config_text, figure, line, page, table, thin, variant_color
from .text import Text

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
            percentiles = tap_of(last, "act_input")["percentiles"]  # type: ignore[index]
            put("band", [percentiles[i] for i in self.band_index])
            fixed = last.get("drift_fixed")  # none in a watched run: it has no held-out set
            if fixed and fixed.get("unit_percentiles"):
                put("unit", fixed["unit_percentiles"])
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
    hello: dict[str, Json],
    records: Iterable[dict[str, Json]],
    title: str | None = None,
    language: str = "en",
) -> str:
    """The report of one run: the hello record, then its frames and events in order."""
    series = RunSeries(hello)
    for record in records:
        series.add(record)
    return _render(series, title, Text(language))


# Settings a change can move, as events name them (docs/protocol.md).
SETTINGS = ("lr", "batch_size", "bn_momentum")


def _render(series: RunSeries, title: str | None, text: Text) -> str:
    hello, config = series.hello, series.hello["config"]
    if config.get("source") == "watch":
        intro = text(
            "intro.watched",
            n=len(hello["variants"]),
            name=config.get("name"),
            every=config.get("every"),
        )
    else:
        dataset = hello["dataset"]
        intro = text(
            "intro",
            n=len(hello["variants"]),
            dataset=dataset["name"],
            train=dataset["n_train"],
            test=dataset["n_test"],
            config=config_text(config),
        )
    changes = [e for e in series.events if e["kind"] in SETTINGS]
    if changes:
        intro += " " + text("markers")
    marks = [int(e["step"]) for e in changes]
    figures = [*_band_figures(series, text, marks), *_curve_figures(series, text, marks)]
    sections = [_settings_table(series, text), _run_table(series, text), _events(series, text)]
    return page(
        title or text("run"),
        intro,
        figures,
        sections,
        language=text.language,
        footer=text("footer"),
    )


def _settings_table(series: RunSeries, text: Text) -> str:
    """The settings each stretch of steps trained with: the start's, then each change's."""
    config = series.hello["config"]
    if not all(name in config for name in SETTINGS):
        return ""  # a watched run: its settings are its own program's
    current = {name: config[name] for name in SETTINGS}
    rows: list[list[str]] = []
    start, cause = 0, text("cause.start")
    for event in sorted(
        (e for e in series.events if e["kind"] in SETTINGS), key=lambda e: int(e["step"])
    ):
        step = int(event["step"])
        if step > start:
            rows.append(
                [str(start), str(step), *(_shown(current[n], text) for n in SETTINGS), cause]
            )
            start = step
        current[str(event["kind"])] = event.get("value")
        cause = text("cause.schedule" if event.get("scheduled") else "cause.change")
    rows.append([str(start), text("end"), *(_shown(current[n], text) for n in SETTINGS), cause])
    header = [text("col.from"), text("col.to"), *(text(f"col.{n}") for n in SETTINGS)]
    return table(text("settings"), [*header, text("col.cause")], rows)


def _shown(value: Json, text: Text) -> str:
    if value is None:
        return text("cumulative")  # BN momentum null: the equal-weight average
    return f"{value:g}" if isinstance(value, float) else str(value)


def _band_figures(series: RunSeries, text: Text, marks: list[int]) -> list[Figure]:
    """Ioffe & Szegedy Figure 1(b, c): the last layer's activation input, one panel per variant,
    every panel on the same y range (so a narrow band looks narrow), gaps where it sat out."""
    panels = []
    for variant, data in series.variants.items():
        points = thin(data.get("band", []))
        steps = [s for s, _ in points]
        low, mid, high = ([None if b is None else b[i] for _, b in points] for i in range(3))
        # One typical unit on the same held-out examples every frame, as the page dots it.
        unit = thin(data.get("unit", []))
        unit_lines = [([s for s, _ in unit], [u[i] for _, u in unit]) for i in range(3)]
        panels.append((variant, steps, low, mid, high, unit_lines))
    finite = [
        v
        for *_, low, _, high, unit_lines in panels
        for v in (*low, *high, *(y for _, ys in unit_lines for y in ys))
        if v is not None and math.isfinite(v)
    ]
    shared = [min(finite), max(finite)] if finite else None
    figures = []
    for k, (variant, steps, low, mid, high, unit_lines) in enumerate(panels):
        color = variant_color(variant, k)
        traces = [
            {**line(steps, high, "85th", color, width=0), "showlegend": False},
            {**line(steps, low, text("band.legend"), color, width=0), "fill": "tonexty"},
            line(steps, mid, text("median"), color),
        ]
        traces += [
            {
                **line(xs, ys, text("band.unit"), "#222", width=1),
                "line": {"color": "#222", "width": 1, "dash": "dot"},
                "showlegend": i == 0,
                "legendgroup": "unit",
            }
            for i, (xs, ys) in enumerate(unit_lines)
            if xs
        ]
        label = series.hello["variants"][variant]["label"]
        figures.append(
            figure(
                traces,
                text("band.title", variant=variant, label=label),
                text("step"),
                text("act_input"),
                y_range=shared,
                marks=marks,
            )
        )
    return figures


def _curve_figures(series: RunSeries, text: Text, marks: list[int]) -> list[Figure]:
    plots = [
        ("loss.title", [("loss", "")], "loss", "log"),
        (
            "acc.title",
            [("test_acc", ""), ("test_acc_train_mode", "dash"), ("test_acc_population", "dot")],
            "accuracy",
            "linear",
        ),
        ("w1.title", [("w1_start", ""), ("w1", "dot")], "W1", "linear"),
        ("grad_diff.title", [("grad_diff", "")], "||G - G'||", "log"),
        ("grad_cos.title", [("grad_cos", "")], "cosine", "linear"),
        ("loss_range.title", [("loss_range", "")], "loss range", "log"),
        ("grad_predictiveness.title", [("grad_predictiveness", "")], "||Δg||", "log"),
        ("beta_smoothness.title", [("beta_smoothness", "")], "β", "log"),
    ]
    words = {"loss", "accuracy", "cosine", "loss range"}  # the axis titles that are words
    figures = []
    for title, names, axis, scale in plots:
        traces = [
            {
                **line(
                    *columns(data[name]),
                    f"{variant} {text('series.' + name)}",
                    variant_color(variant, k),
                ),
                "line": {"color": variant_color(variant, k), "dash": dash or "solid"},
            }
            for k, (variant, data) in enumerate(series.variants.items())
            for name, dash in names
            if data.get(name)
        ]
        if traces:
            y = text(axis) if axis in words else axis
            figures.append(figure(traces, text(title), text("step"), y, y_type=scale, marks=marks))
    return figures


def _run_table(series: RunSeries, text: Text) -> str:
    columns_shown = (
        "train_loss",
        "train_acc",
        "test_acc",
        "acc_train_mode",
        "acc_population",
        "band_start",
        "band_end",
        "w1_start",
    )
    header = [text("col.variant"), *(text(f"col.{name}") for name in columns_shown)]
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
    return table(text("final"), header, rows)


def event_text(event: dict[str, Json], text: Text | None = None) -> str:
    """One event in words, as the page says it (table() escapes it)."""
    text = text or Text()
    kind = event.get("kind")
    if kind in SETTINGS:
        before, after = event.get("previous"), event.get("value")
        return f"{text('setting.' + str(kind))} {_shown(before, text)} → {_shown(after, text)}"
    if kind == "state":
        message = event.get("message")
        return text("event.state", state=event.get("state")) + (f": {message}" if message else "")
    if kind == "skipped":
        names = ", ".join(str(v) for v in event.get("variants") or [])
        return text("event.skipped", names=names, reason=event.get("reason", ""))
    if kind == "diverged":
        return text("event.diverged", variant=event.get("variant"), reason=event.get("reason", ""))
    rest = {k: v for k, v in event.items() if k not in ("v", "type", "step", "kind")}
    return json.dumps(rest)


def _events(series: RunSeries, text: Text) -> str:
    rows = [[str(e["step"]), str(e["kind"]), event_text(e, text)] for e in series.events]
    header = [text("col.step"), text("col.kind"), text("col.what")]
    return table(text("events"), header, rows) if rows else ""


def _band_text(band: list[float | None] | None) -> str:
    if not band:
        return "–"
    return " / ".join("–" if b is None else f"{b:.3g}" for b in band)


def _last(data: dict[str, list[Any]], name: str) -> str:
    values = data.get(name)
    if not values or values[-1][1] is None:
        return "–"
    return f"{values[-1][1]:.4g}"


def report_html(run_id: str, lines: Iterable[str], language: str = "en") -> str:
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
        words = Text(language)
        return _render(series, f"{words('run')} {run_id}", words)
    except MISFIT:
        raise DamagedRun(f"run {run_id}: its hello is damaged; no report") from None


def report_filename(run_id: str) -> str:
    return f"covshift-{run_id}-report.html"


class NoDataYet(CovshiftError):
    """The run's hello has not arrived: nothing to report yet."""


class DamagedRun(CovshiftError):
    """The run's records cannot make a report (its hello is damaged)."""
