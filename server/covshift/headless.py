"""Headless runs: train a config to the end, writing frames.jsonl and summary.json."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from .config import RunConfig
from .frames import Json
from .trainer import Trainer

Progress = Callable[[int, int, dict[str, Json]], None]


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
            if "test" in entry:
                latest["test"] = {"step": record["step"], **entry["test"]}

    def to_json(self, trainer: Trainer, seconds: float) -> dict[str, Json]:
        return {
            "config": trainer.config.model_dump(mode="json"),
            "steps": trainer.step,
            "epochs": trainer.epoch,
            "seconds": seconds,
            "steps_per_second": trainer.step / seconds if seconds > 0 else None,
            "events": self.events,
            "variants": self.variants,
        }


def run_headless(config: RunConfig, out: Path, progress: Progress | None = None) -> dict[str, Json]:
    """Train to config.steps; stream every message to out/frames.jsonl; return the summary."""
    trainer = Trainer(config)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(trainer)
    started = time.perf_counter()
    with (out / "frames.jsonl").open("w", encoding="utf-8") as frames:
        frames.write(json.dumps(trainer.hello(), allow_nan=False) + "\n")
        while not trainer.done:
            for record in trainer.train_step():
                frames.write(json.dumps(record, allow_nan=False) + "\n")
                summary.update(record)
            if progress is not None:
                progress(trainer.step, config.steps, summary.variants)
    result = summary.to_json(trainer, time.perf_counter() - started)
    (out / "summary.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
