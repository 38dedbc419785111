"""Headless runs: train a config or a preset to the end, writing frames, summary and report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from covshift.reports.page import ReportError
from covshift.reports.run import render_run_report
from covshift.reports.runfile import read_run
from covshift.reports.sweep import render_sweep_report
from covshift.train.sweep import PointDone, run_sweep
from covshift.train.trainer import Trainer

from .config import RunConfig
from .errors import ConfigError
from .presets import PRESETS, dataset_note
from .wire import Json, encode_line

Progress = Callable[[int, int, dict[str, Json]], None]
logger = logging.getLogger(__name__)


class Summary:
    """Keeps the latest numbers of each variant as messages stream by."""

    def __init__(self, trainer: Trainer) -> None:
        self.variants: dict[str, dict[str, Json]] = {
            v: {"status": "training", "diverged_at": None, "train": None, "test": None}
            for v in trainer.models
        }
        self.events = 0

    def update(self, record: dict[str, Json]) -> None:
        if record["type"] == "event":
            self.events += 1
            if record["kind"] == "diverged":
                self.variants[record["variant"]]["diverged_at"] = record["step"]
            return
        for variant, entry in record["variants"].items():
            latest = self.variants[variant]
            latest["status"] = entry["status"]
            if "loss" in entry:
                latest["train"] = {
                    "step": record["step"],
                    "loss": entry["loss"],
                    "acc": entry["acc"],
                }
            if "test" in entry:  # null: not scored at this step (skipped or diverged)
                test = entry["test"]
                latest["test"] = None if test is None else {"step": record["step"], **test}

    def to_json(self, trainer: Trainer, seconds: float) -> dict[str, Json]:
        # Said for the run as it ended: a variant still training at the last step trained.
        variants = {
            v: {**entry, "status": "trained" if entry["status"] == "training" else entry["status"]}
            for v, entry in self.variants.items()
        }
        return {
            "state": "finished" if trainer.done else "stopped",
            "config": trainer.config.model_dump(mode="json"),
            "steps": trainer.step,
            "epochs": trainer.epoch,
            "seconds": seconds,
            "steps_per_second": trainer.step / seconds if seconds > 0 else None,
            "events": self.events,
            "variants": variants,
        }


def run_headless(
    config: RunConfig, out: Path, progress: Progress | None = None, title: str | None = None
) -> dict[str, Json]:
    """Train to config.steps; stream every message to out/frames.jsonl, then write
    out/summary.json and out/report.html; return the summary."""
    trainer = Trainer(config)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(trainer)

    def write(records: list[dict[str, Json]]) -> None:
        for record in records:
            frames.write(encode_line(record))
            summary.update(record)

    trainer.measure_apart()  # frames are made beside training, where a core is free for it
    try:
        started = time.perf_counter()
        with (out / "frames.jsonl").open("wb") as frames:
            frames.write(encode_line(trainer.hello()))
            while not (trainer.done or trainer.all_diverged):
                write(trainer.train_step())
                if progress is not None:
                    progress(trainer.step, config.steps, summary.variants)
            write(trainer.flush())
        result = summary.to_json(trainer, time.perf_counter() - started)
    finally:
        trainer.close()
    (out / "summary.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    hello, records = read_run(out)
    _write_report(out, lambda: render_run_report(hello, records, title))
    return result


def run_preset(
    name: str,
    config: RunConfig,
    out: Path,
    progress: Progress | None = None,
    on_point: PointDone | None = None,
    seeds: Sequence[int] = (),
) -> dict[str, Json]:
    """Run a preset (config already holds its values and the user's): one headless run, or a
    sweep writing its points to out/summary.json and its figures to out/report.html; a sweep
    runs each point once per seed in `seeds` (none: config.seed only)."""
    preset = PRESETS[name]
    title = f"{preset.title}, {dataset_note(config)}" if name == "paper-fig1" else preset.title
    if preset.sweep is None:
        if seeds:
            raise ConfigError(f"seeds: {name} is one run, not a sweep; set its seed instead")
        return run_headless(config, out, progress, title)
    sweep = preset.sweep
    result = run_sweep(config, sweep.field, sweep.values, on_point, scale=sweep.scale, seeds=seeds)
    result["preset"] = name
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    _write_report(out, lambda: render_sweep_report(result, title))
    return result


def _write_report(out: Path, render: Callable[[], str]) -> None:
    """Write out/report.html; a missing plotly costs the report, never the run's data."""
    try:
        (out / "report.html").write_text(render(), encoding="utf-8")
    except ReportError as exc:
        logger.warning("%s", exc)
