"""Frames measured in a process beside training: the same frames, in the same order, as the
trainer makes inline; its failures reach the trainer."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from covshift.config import RunConfig
from covshift.headless import run_headless
from covshift.train import measuring
from covshift.train.measuring import MeasuringError, load_model_state, model_state
from covshift.train.models import build_variants
from covshift.train.trainer import Trainer
from covshift.variants import VARIANTS
from covshift.wire import Json, encode

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="measuring apart needs Linux and two CPU cores",
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Training on one thread, as covshift run does by default: a core is left over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inline_and_apart(config: RunConfig) -> tuple[list[str], list[str]]:
    inline, apart = Trainer(config), Trainer(config)
    apart.measure_apart()
    assert apart._apart is not None, "the frames would be made inline"
    try:
        lines = ([], [])
        for trainer, out in zip((inline, apart), lines, strict=True):
            while not (trainer.done or trainer.all_diverged):
                out += [encode(m) for m in trainer.train_step()]
            out += [encode(m) for m in trainer.flush()]
    finally:
        apart.close()
    return lines


@pytest.mark.parametrize(
    "overrides",
    [
        {
            "variants": tuple(VARIANTS),
            "ics_every": 40,
            "compare_cumulative": True,
            "schedule": [{"step": 55, "batch_size": 32, "lr": 0.3, "bn_momentum": 0.5}],
        },
        {"arch": "cnn", "variants": ("plain", "bn", "brn", "noisy_bn"), "steps": 60},
    ],
)
def test_frames_made_apart_are_the_frames_made_inline(overrides: dict[str, Json]) -> None:
    config = RunConfig(**{"dataset": "digits", "steps": 130, "probe_every": 20, **overrides})
    inline, apart = _inline_and_apart(config)
    assert sum('"type":"frame"' in line for line in inline) >= 4
    assert apart == inline


def test_a_divergence_found_apart_is_flagged_as_inline() -> None:
    config = RunConfig(
        dataset="digits", activation="relu", init="default", lr=10, depth=2, width=32,
        steps=60, probe_every=5, variants=("plain", "bn"),
    )  # fmt: skip
    inline, apart = _inline_and_apart(config)
    assert any('"kind":"diverged"' in line for line in inline)
    assert apart == inline


class Broken(RuntimeError):
    pass


def test_an_error_while_measuring_apart_is_raised_by_the_trainer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(self: object, job: object) -> None:
        raise Broken("no frame today")

    trainer = Trainer(RunConfig(dataset="digits", steps=30, probe_every=10))
    monkeypatch.setattr(measuring.FrameMaker, "make", fail)  # the forked process has it too
    trainer.measure_apart()
    try:
        trainer.train_step()
        with pytest.raises(Broken, match="no frame today"):
            trainer.flush()
    finally:
        trainer.close()


def test_the_measuring_process_leaves_what_it_started_with_out_of_its_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its collector never walks (and so never copies the pages of) the objects it shares
    with the trainer at the fork; the trainer's collector still sees its own."""

    def frozen(self: object, job: object) -> dict[str, Json]:
        return {"type": "frame", "frozen": gc.get_freeze_count()}

    trainer = Trainer(RunConfig(dataset="digits", steps=30, probe_every=10))
    monkeypatch.setattr(measuring.FrameMaker, "make", frozen)
    trainer.measure_apart()
    tracked = len(gc.get_objects())  # the trainer's, just after the fork
    try:
        trainer.train_step()
        (frame,) = [m for m in trainer.flush() if m["type"] == "frame"]
    finally:
        trainer.close()
    # all of them, but for what the trainer made or freed since the fork (without the
    # freeze: none)
    assert frame["frozen"] > 0.9 * tracked
    assert gc.get_freeze_count() == 0


def test_a_measuring_process_that_dies_is_a_clear_error() -> None:
    trainer = Trainer(RunConfig(dataset="digits", steps=30, probe_every=10))
    trainer.measure_apart()
    apart = trainer._apart
    assert apart is not None
    try:
        os.kill(apart._process.pid, signal.SIGKILL)
        apart._process.join()
        with pytest.raises(MeasuringError, match=r"measuring process ended \(exit code -9\)"):
            trainer.train_step()  # step 0 is probed: its frame is handed over
            trainer.flush()
    finally:
        trainer.close()


def test_measuring_apart_needs_a_core_that_training_leaves_free() -> None:
    cores = len(os.sched_getaffinity(0))
    assert measuring.can_measure_apart(torch.device("cpu"))
    assert not measuring.can_measure_apart(torch.device("cuda"))
    torch.set_num_threads(cores)
    assert not measuring.can_measure_apart(torch.device("cpu"))
    trainer = Trainer(RunConfig(dataset="digits", steps=10))
    trainer.measure_apart()  # frames stay inline: every core trains
    assert trainer._apart is None
    assert [m["type"] for m in trainer.train_step()] == ["frame"]


def test_a_system_that_refuses_the_shared_memory_gets_its_frames_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(*args: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(measuring, "SharedTensors", refused)
    trainer = Trainer(RunConfig(dataset="digits", steps=10))
    trainer.measure_apart()
    assert trainer._apart is None
    assert [m["type"] for m in trainer.train_step()] == ["frame"]


def test_a_model_state_loaded_into_a_twin_makes_the_same_training_forward() -> None:
    config = RunConfig(dataset="digits", variants=("brn", "noisy_bn", "wn"), depth=2, width=16)
    models = build_variants(config, 64, 10, torch.device("cpu"))
    twins = build_variants(config.model_copy(update={"seed": 1}), 64, 10, torch.device("cpu"))
    x = torch.randn(32, 64)
    for name, model in models.items():
        model(x)  # moves running statistics, r and d, the noise generator
        load_model_state(twins[name], model_state(model))
        torch.testing.assert_close(twins[name](x), model(x), rtol=0, atol=0)


def test_a_run_whose_measuring_fails_keeps_the_frames_written_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make = measuring.FrameMaker.make
    calls = []

    def third_fails(self: measuring.FrameMaker, job: measuring.FrameJob) -> dict[str, Json]:
        calls.append(job.view.step)  # in the measuring process: its own list
        if len(calls) == 3:
            raise Broken("the third frame")
        return make(self, job)

    monkeypatch.setattr(measuring.FrameMaker, "make", third_fails)
    with pytest.raises(Broken, match="the third frame"):
        run_headless(RunConfig(dataset="digits", steps=100, probe_every=10), tmp_path)
    lines = (tmp_path / "frames.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["hello", "frame", "frame"]
    assert calls == [], "the frames were made in this process, not beside it"
