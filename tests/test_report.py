"""Reports: one self-contained HTML file (plotly.js inlined, no network), figures built from the
wire records, and a table whose numbers are the run's own."""

from __future__ import annotations

import json
import re

import pytest
from covshift.config import RunConfig
from covshift.reports.run import RunSeries, render_run_report
from covshift.reports.sweep import render_sweep_report
from covshift.train.data import Dataset
from covshift.train.sweep import run_sweep
from covshift.train.trainer import Trainer


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
