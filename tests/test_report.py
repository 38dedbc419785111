"""Reports: one self-contained HTML file (plotly.js inlined, no network), figures built from the
wire records, and a table whose numbers are the run's own."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
import serverkit
from covshift.config import RunConfig
from covshift.reports.run import RunSeries, render_run_report, report_html
from covshift.reports.sweep import render_sweep_report
from covshift.train.data import Dataset
from covshift.train.sweep import run_sweep
from covshift.train.trainer import Trainer
from covshift.variants import VARIANTS
from covshift.web.lifecycle import RunInfo, RunState
from covshift.web.store import RunStore
from covshift.wire import encode
from serverkit import ThreadedServer, strict_json


def _records(config: RunConfig, digits: Dataset) -> tuple[dict, list[dict]]:
    trainer = Trainer(config, digits)
    records = []
    while not trainer.done:
        records += trainer.train_step()
    return trainer.hello(), records


def _figures(page: str) -> list[dict]:
    match = re.search(r"const figures = (.*?);\n", page)
    assert match, "the page embeds its figures as JSON"
    figures: list[dict] = json.loads(match.group(1).replace("<\\/", "</"))
    return figures


def test_run_report_is_self_contained_and_plots_the_last_layers_band(digits: Dataset) -> None:
    config = RunConfig(depth=2, width=8, steps=12, probe_every=4, test_every=4, ics_every=4)
    hello, records = _records(config, digits)
    page = render_run_report(hello, records, title="tiny <run>")
    assert "<title>tiny &lt;run&gt;</title>" in page
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js inlined
    assert not re.search(r"<script[^>]+src=", page), "no script is fetched from anywhere"
    figures = _figures(page)
    band = figures[1]["data"]  # the second variant's panel: bn
    frames = [r for r in records if r["type"] == "frame"]
    last = frames[-1]["variants"]["bn"]["layers"][-1]["taps"]["act_input"]["percentiles"]
    assert band[0]["y"][-1] == last[3] and band[1]["y"][-1] == last[1]  # 85th and 15th
    assert band[2]["x"] == [f["step"] for f in frames]
    assert any("G - G'" in f["layout"]["title"]["text"] for f in figures)
    final_acc = frames[-1]["variants"]["bn"]["test"]["acc"]
    assert f"{final_acc:.4g}" in page
    # Each variant's band in its one colour, the page's: BN orange, plain blue (covshift.variants).
    colors = {trace["line"]["color"] for trace in band[:3]}
    assert colors == {VARIANTS["bn"].color}
    assert {t["line"]["color"] for t in figures[0]["data"][:3]} == {VARIANTS["plain"].color}
    # Beside the pooled band, dotted: one typical unit's 15/50/85th percentiles on the same
    # held-out examples every frame, as the frames give them.
    unit = [t for t in band if t.get("legendgroup") == "unit"]
    assert [t["line"]["dash"] for t in unit] == ["dot"] * 3
    fixed = [f["variants"]["bn"]["layers"][-1]["drift_fixed"] for f in frames]
    for i, trace in enumerate(unit):
        assert trace["x"] == [f["step"] for f in frames]
        assert trace["y"] == [entry["unit_percentiles"][i] for entry in fixed]


def test_report_bands_share_one_y_range_break_where_a_variant_sat_out_and_say_events(
    digits: Dataset,
) -> None:
    config = RunConfig(depth=1, width=8, steps=12, probe_every=2, test_every=100, ics_every=0)
    trainer = Trainer(config, digits)
    records: list[dict] = []
    for step in range(config.steps):
        if step == 4:  # BN sits out steps 4-7 at batch size 1
            records += trainer.set_batch_size(1) + trainer.set_lr(0.25)
        if step == 8:
            records += trainer.set_batch_size(60)
        records += trainer.train_step()
    page = render_run_report(trainer.hello(), records)
    plain, bn = _figures(page)[:2]
    # One y range for both panels, spanning both bands: BN's wide band and plain's narrow one.
    assert plain["layout"]["yaxis"]["range"] == bn["layout"]["yaxis"]["range"]
    low, high = bn["layout"]["yaxis"]["range"]
    bands = [t["y"] for f in (plain, bn) for t in f["data"]]  # the typical units' too
    values = [v for band in bands for v in band if v is not None]
    assert low == min(values) and high == max(values)
    # BN's median breaks (null) at the frames it sat out, instead of a bridging line.
    steps, median = bn["data"][2]["x"], bn["data"][2]["y"]
    sat_out = [s for s, m in zip(steps, median, strict=True) if m is None]
    assert sat_out == [4, 6]
    assert all(m is not None for m in plain["data"][2]["y"])
    # Events in words, as the page says them.
    assert "learning rate 0.5 → 0.25" in page
    assert "batch size 60 → 1" in page and "batch size 1 → 60" in page
    assert "bn skipped: BatchNorm cannot train on batch size 1" in page


def test_run_series_keep_ics_and_inference_numbers(digits: Dataset) -> None:
    config = RunConfig(depth=1, width=8, steps=6, probe_every=2, test_every=2, ics_every=2)
    hello, records = _records(config, digits)
    series = RunSeries(hello)
    for record in records:
        series.add(record)
    bn = series.variants["bn"]
    assert [s for s, _ in bn["grad_diff"]] == [0, 2, 4]
    assert len(bn["test_acc_population"]) == len(bn["test_acc"]) == 4
    assert "test_acc_population" not in series.variants["plain"]


def test_sweep_report_plots_accuracy_and_batch_noise(digits: Dataset) -> None:
    base = RunConfig(variants=("plain", "bn"), depth=1, width=8, steps=6, ics_every=0)
    result = run_sweep(base, "batch_size", (2, 8), dataset=digits)
    page = render_sweep_report(result)
    figures = _figures(page)
    accuracy = figures[0]["data"][1]
    assert accuracy["name"] == "bn" and accuracy["x"] == [2, 8]
    assert accuracy["y"] == [p["variants"]["bn"]["test"]["acc"] for p in result["points"]]
    reference = figures[-1]["data"][-1]
    assert reference["name"] == "1/sqrt(B)"
    assert reference["y"] == pytest.approx([2**-0.5, 8**-0.5])


# ---- planted values: every value escaped, scripts allowed by hash only ----

PLANTED = {
    "tag": "<img src=x onerror=alert(1)>",
    "script": "<script>alert(2)</script>",
    "link": '<a href="https://example.invalid/">click</a>',
    "comment": "<!--<script>",
}


def _planted_run(digits: Dataset) -> tuple[dict, list[dict]]:
    """A real run's records with a hostile value in every field a report shows."""
    config = RunConfig(depth=1, width=8, steps=6, probe_every=2, test_every=2)
    hello, records = _records(config, digits)
    hostile = PLANTED["link"]
    hello["variants"][hostile] = {**hello["variants"].pop("bn"), "label": PLANTED["tag"]}
    hello["dataset"]["name"] = PLANTED["script"]
    hello["config"]["activation"] = PLANTED["tag"]
    for record in records:
        if record["type"] == "frame":
            record["variants"][hostile] = record["variants"].pop("bn")
    records.append(
        {
            "v": 1,
            "type": "event",
            "step": PLANTED["tag"],
            "kind": PLANTED["script"],
            PLANTED["comment"]: PLANTED["link"],
        }
    )
    return hello, records


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [text for item in value for text in _strings(item)] if isinstance(value, list) else []


def _inline_scripts(page: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)


def _csp(page: str) -> dict[str, list[str]]:
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert match, "the report carries its own Content-Security-Policy"
    directives = (part.split() for part in match.group(1).split(";") if part.strip())
    return {name: values for name, *values in directives}


def _assert_safe(page: str) -> None:
    for value in PLANTED.values():
        assert value not in page, f"{value} is in the page unescaped"
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown, as text
    assert len(re.findall(r"<script\b", page, flags=re.IGNORECASE)) == 2
    policy = _csp(page)
    assert policy["default-src"] == ["'none'"]
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _inline_scripts(page)
    }
    assert set(policy["script-src"]) == hashes  # only the inlined scripts, no origin at all
    assert "'unsafe-inline'" not in policy["script-src"]


def test_a_run_report_escapes_every_planted_value_and_allows_only_its_own_scripts(
    digits: Dataset,
) -> None:
    hello, records = _planted_run(digits)
    page = render_run_report(hello, records, title=PLANTED["tag"])
    _assert_safe(page)
    texts = _strings(_figures(page))  # Plotly reads its text as HTML: escaped there too
    assert not any(value in text for value in PLANTED.values() for text in texts)
    assert any(html.escape(PLANTED["link"], quote=False) in text for text in texts)
    lines = [json.dumps(hello), *map(json.dumps, records)]
    assert report_html(PLANTED["tag"], lines) == render_run_report(
        hello, records, title=f"covshift run {PLANTED['tag']}"
    )


def test_a_sweep_report_escapes_every_planted_value(digits: Dataset) -> None:
    base = RunConfig(variants=("plain", "bn"), depth=1, width=8, steps=4, ics_every=0)
    result = run_sweep(base, "lr", (0.1, 0.5), dataset=digits)
    result["dataset"]["name"] = PLANTED["script"]
    for point in result["points"]:
        point["variants"]["bn"]["status"] = PLANTED["tag"]
    page = render_sweep_report(result, title=PLANTED["link"])
    _assert_safe(page)


# ---- a long run's report and export, in bounded memory ----

HISTORY_FRAMES = 40  # the server's history_frames: the report's bound, kept small here
FRAMES = 150  # frames of the shorter run; the longer one has 4 times as many


def _stored_run(root: Path, run_id: str, lines: list[str], frames: int) -> int:
    """A finished run in the store whose frames.jsonl repeats the real frames of `lines`
    with increasing steps; its size in bytes."""
    hello, *rest = lines
    real = [line for line in rest if strict_json(line)["type"] == "frame"]
    events = [line for line in rest if strict_json(line)["type"] == "event"]
    info = RunInfo(
        id=run_id,
        state=RunState.FINISHED,
        created=datetime(2025, 1, 1, tzinfo=timezone.utc),
        ended=datetime(2025, 1, 2, tzinfo=timezone.utc),
        config={},
        lr=0.5,
        batch_size=60,
        bn_momentum=0.1,
    )
    log = RunStore(root).create(info, {"dataset": "digits"})
    log.append([hello, *events])
    for step in range(frames):
        text = real[step % len(real)]
        log.append([re.sub(r'"step":\d+', f'"step":{step}', text, count=1)])
    log.close()
    return (root / run_id / "frames.jsonl").stat().st_size


def _peak_bytes(fetch: Callable[[], None]) -> int:
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    fetch()
    return tracemalloc.get_traced_memory()[1] - before


@pytest.mark.slow
def test_a_long_runs_report_and_export_take_memory_bounded_by_the_history(
    tmp_path: Path, digits: Dataset
) -> None:
    config = RunConfig(depth=3, width=100, steps=40, probe_every=5, test_every=10)
    hello, records = _records(config, digits)
    lines = [encode(hello), *map(encode, records)]
    short, long = "s" * 22, "l" * 22
    sizes = {
        run_id: _stored_run(tmp_path, run_id, lines, frames)
        for run_id, frames in ((short, FRAMES), (long, 4 * FRAMES))
    }
    settings = serverkit.settings(tmp_path, allowed_hosts=None, history_frames=HISTORY_FRAMES)
    peaks: dict[tuple[str, str], int] = {}
    with ThreadedServer(settings) as live:

        def download(path: str) -> Callable[[], None]:
            def fetch() -> None:
                with live.http.stream("GET", path) as answer:
                    assert answer.status_code == 200
                    for _ in answer.iter_bytes():
                        pass  # read and let go, as a browser saving the file does

            return fetch

        download(f"/api/runs/{short}/report")()  # plotly.js read once, then cached
        tracemalloc.start()
        try:
            for run_id in (short, long):
                for kind in ("report", "export?format=csv", "export?format=jsonl"):
                    peaks[run_id, kind] = _peak_bytes(download(f"/api/runs/{run_id}/{kind}"))
        finally:
            tracemalloc.stop()
        report = live.http.get(f"/api/runs/{long}/report").text
    assert sizes[long] > 4 * sizes[short] * 0.95 and sizes[short] > 4_000_000, sizes
    for kind in ("report", "export?format=csv", "export?format=jsonl"):
        # 4 times the file, about the same memory: it depends on the history, not the run.
        assert peaks[long, kind] < 1.5 * peaks[short, kind], (kind, peaks)
    band = _figures(report)[0]["data"][2]["x"]  # the first variant's median, by step
    assert band[0] == 0 and band[-1] == 4 * FRAMES - 1  # first and newest frames kept
    assert len(band) <= HISTORY_FRAMES


def test_the_report_lists_the_settings_over_time_marks_changes_and_speaks_korean(
    digits: Dataset,
) -> None:
    schedule = [{"step": 6, "lr": 0.125}]
    config = RunConfig(
        depth=1, width=8, steps=10, probe_every=2, test_every=100, ics_every=0, schedule=schedule
    )
    trainer = Trainer(config, digits)
    records: list[dict] = []
    for step in range(config.steps):
        if step == 3:  # a person's change, then the lesson's scheduled one at step 6
            records += trainer.set_batch_size(30)
        records += trainer.train_step()
    page = render_run_report(trainer.hello(), records)
    settings = page.split("<h2>Settings over time</h2>")[1].split("</table>")[0]
    rows = [
        [cell.split("</td>")[0] for cell in row.split("<td>")[1:]]
        for row in settings.split("<tr>")[2:]
    ]
    assert rows == [
        ["0", "3", "0.5", "60", "0.1", "the run&#x27;s start"],
        ["3", "6", "0.5", "30", "0.1", "a change"],
        ["6", "end", "0.125", "30", "0.1", "the lesson&#x27;s schedule"],
    ]
    # Every step-axis figure marks both changes with a dashed line at their steps.
    for figure in _figures(page):
        marks = sorted(shape["x0"] for shape in figure["layout"]["shapes"])
        assert marks == [3, 6], figure["layout"]["title"]
    korean = render_run_report(trainer.hello(), records, language="ko")
    assert '<html lang="ko">' in korean and "시간에 따른 설정" in korean
    assert "학습률 0.5 → 0.125" in korean and "Settings over time" not in korean
