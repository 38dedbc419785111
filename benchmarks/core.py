"""Probed training throughput against a bare PyTorch loop; one probe against TensorBoard."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from covshift.config import ICS_EVERY_WHEN_ON, RunConfig
from covshift.train.packing import Packer
from covshift.train.probes import capture, tap_values
from covshift.train.trainer import Trainer
from covshift.wire import encode_line, message


def bare_loop(trainer: Trainer) -> Callable[[int], None]:
    """The same variants, batches and optimizers as the trainer, with nothing measured."""

    def run(steps: int) -> None:
        for _ in range(steps):
            x, y = trainer.next_batch()
            for variant, model in trainer.models.items():
                loss = trainer.loss_fn(model(x), y)
                optimizer = trainer.optimizers[variant]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    return run


def probed_loop(trainer: Trainer) -> Callable[[int], None]:
    def run(steps: int) -> None:
        for _ in range(steps):
            trainer.train_step()

    return run


def _rate(run: Callable[[int], None], steps: int) -> float:
    started = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - started)


def throughput(rounds: int, steps: int) -> dict[str, float]:
    """Steps/s of each loop, interleaved round by round so machine noise hits all alike."""
    endless = {"steps": 10_000_000, "test_every": 1_000_000}
    default = RunConfig(**endless)
    loops = {
        "bare": bare_loop(Trainer(default)),
        "probed_default": probed_loop(Trainer(default)),
        "probed_every_step": probed_loop(Trainer(RunConfig(**endless, probe_every=1))),
    }
    for run in loops.values():
        run(50)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, run in loops.items():
            rates[name].append(_rate(run, steps))
    ratios_default = [p / b for p, b in zip(rates["probed_default"], rates["bare"], strict=True)]
    ratios_every = [p / b for p, b in zip(rates["probed_every_step"], rates["bare"], strict=True)]
    return {
        "probe_every_default": default.probe_every,
        "bare_steps_per_s": statistics.median(rates["bare"]),
        "probed_default_steps_per_s": statistics.median(rates["probed_default"]),
        "probed_every_step_steps_per_s": statistics.median(rates["probed_every_step"]),
        "ratio_default": statistics.median(ratios_default),
        "ratio_every_step": statistics.median(ratios_every),
    }


def every_step_floor(repeats: int) -> dict[str, float]:
    """The best ratio probing every step could reach here, whatever the code: a bare step
    against the same step with the hooks capturing every tap, plus one NumPy sort of the
    distinct tapped tensors (exact percentiles need it), before any histogram, moment,
    BN statistic or JSON."""
    trainer = Trainer(RunConfig(steps=10_000_000, test_every=1_000_000))

    def step(probed: bool) -> list[dict[str, torch.Tensor]]:
        x, y = trainer.next_batch()
        taps: list[dict[str, torch.Tensor]] = []
        for variant, model in trainer.models.items():
            with capture(model) if probed else nullcontext() as layers:
                logits = model(x)
            if layers is not None:
                taps += tap_values(model, layers)
            loss = trainer.loss_fn(logits, y)
            optimizer = trainer.optimizers[variant]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return taps

    def distinct(taps: list[dict[str, torch.Tensor]]) -> np.ndarray:
        tensors = {(t.data_ptr(), t.shape): t for layer in taps for t in layer.values()}
        return torch.stack([t.reshape(-1) for t in tensors.values()]).numpy()

    for _ in range(50):
        step(False)
        step(True)
    timings: dict[str, list[float]] = {"bare": [], "captured": [], "sort": []}
    for _ in range(repeats):
        for name in ("bare", "captured"):
            started = time.perf_counter()
            taps = step(name == "captured")
            timings[name].append(time.perf_counter() - started)
        values = distinct(taps)
        started = time.perf_counter()
        np.sort(values, axis=1)
        timings["sort"].append(time.perf_counter() - started)
    ms = {name: statistics.median(times) * 1e3 for name, times in timings.items()}
    return {
        "bare_step_ms": ms["bare"],
        "capture_ms": ms["captured"] - ms["bare"],
        "sort_ms": ms["sort"],
        "distinct_tensors": float(len(values)),
        "ratio_floor": ms["bare"] / (ms["captured"] + ms["sort"]),
    }


def probe_vs_tensorboard(repeats: int) -> dict[str, float]:
    """One probe (all layers, all stats, one frame) against add_histogram on the same
    tensors, each taken where it is used: after 20 training steps, on the tensors of the
    step at hand.

    Two comparisons: the measurement alone (probe -> frame dict against the add_histogram
    calls; TensorBoard's writer thread is flushed outside the timing), and the measurement
    recorded on disk (the frame written as a JSON line against add_histogram plus the
    flush that writes its events).
    """
    from torch.utils.tensorboard import SummaryWriter

    trainer = Trainer(RunConfig(steps=10_000_000, test_every=1_000_000))
    train = bare_loop(trainer)

    def taps_now() -> dict[str, list[dict[str, torch.Tensor]]]:
        x, _ = trainer.next_batch()
        values = {}
        for variant, model in trainer.models.items():
            with capture(model) as layers:
                model(x)
            values[variant] = tap_values(model, layers)
        return values

    def probe(values: dict[str, list[dict[str, torch.Tensor]]]) -> dict[str, object]:
        packer = Packer()
        layers = trainer.probe.reduce(values, trainer.models, packer)
        variants = {variant: {"layers": measured} for variant, measured in layers.items()}
        frame: dict[str, object] = packer.resolve(message("frame", step=0, variants=variants))
        return frame

    with tempfile.TemporaryDirectory() as logdir, open(Path(logdir) / "frames.jsonl", "ab") as out:
        writer = SummaryWriter(logdir)

        def probe_recorded(values: dict[str, list[dict[str, torch.Tensor]]]) -> None:
            out.write(encode_line(probe(values)))  # as covshift run writes its frames
            out.flush()

        def tensorboard(values: dict[str, list[dict[str, torch.Tensor]]]) -> None:
            for variant, layers in values.items():
                for layer, taps in enumerate(layers):
                    for tap, tensor in taps.items():
                        writer.add_histogram(f"{variant}/{layer}/{tap}", tensor, 0)

        def tensorboard_recorded(values: dict[str, list[dict[str, torch.Tensor]]]) -> None:
            tensorboard(values)
            writer.flush()

        cases = {
            "probe": probe,
            "tensorboard": tensorboard,
            "probe_recorded": probe_recorded,
            "tensorboard_recorded": tensorboard_recorded,
        }
        timings: dict[str, list[float]] = {name: [] for name in cases}
        tensors = sum(len(taps) for layers in taps_now().values() for taps in layers)
        for round_ in range(repeats + 1):
            for name, fn in cases.items():
                train(20)
                values = taps_now()
                writer.flush()  # nothing of TensorBoard's left to run during the timing
                started = time.perf_counter()
                fn(values)
                if round_:  # the first round warms up
                    timings[name].append(time.perf_counter() - started)
        writer.close()
    ms = {name: statistics.median(times) * 1e3 for name, times in timings.items()}

    def paired(slower: str, faster: str) -> float:
        """The median over rounds of one round's ratio (a round times each case once)."""
        return statistics.median(
            a / b for a, b in zip(timings[slower], timings[faster], strict=True)
        )

    return {
        "tensors": tensors,
        "probe_ms": ms["probe"],
        "tensorboard_ms": ms["tensorboard"],
        "tensorboard_over_probe": paired("tensorboard", "probe"),
        "probe_recorded_ms": ms["probe_recorded"],
        "tensorboard_recorded_ms": ms["tensorboard_recorded"],
        "recorded_tensorboard_over_probe": paired("tensorboard_recorded", "probe_recorded"),
    }


def ics_overhead(rounds: int, steps: int) -> dict[str, float]:
    """Training time with the gradient ICS measures at their cadence against without."""
    endless = {"steps": 10_000_000, "test_every": 1_000_000}
    loops = {
        "off": probed_loop(Trainer(RunConfig(**endless))),
        "on": probed_loop(Trainer(RunConfig(**endless, ics_every=ICS_EVERY_WHEN_ON))),
    }
    for run in loops.values():
        run(50)
    ratios = []
    for _ in range(rounds):
        off = _rate(loops["off"], steps)
        on = _rate(loops["on"], steps)
        ratios.append(off / on - 1)
    return {"ics_every": ICS_EVERY_WHEN_ON, "extra_time": statistics.median(ratios)}


def end_to_end(rounds: int, steps: int) -> dict[str, float]:
    """`covshift run` as a user runs it (the default config: probes every 50 steps, the test
    split scored every 100, every message encoded and written to frames.jsonl) against the
    bare loop over the same variants and batches, rounds interleaved. The training loop's
    steps/s is run_headless's own (summary.json); `report_s` is the report written after it."""
    from covshift.headless import run_headless

    config = RunConfig(steps=steps)
    bare, run, report = [], [], []
    for _ in range(rounds):
        bare.append(_rate(bare_loop(Trainer(config)), steps))
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            summary = run_headless(config, Path(out))
            total = time.perf_counter() - started
        run.append(float(summary["steps_per_second"]))
        report.append(total - steps / run[-1])
    return {
        "steps": float(steps),
        "bare_steps_per_s": statistics.median(bare),
        "run_steps_per_s": statistics.median(run),
        # each run against the bare loop just before it, as throughput pairs its rounds: the
        # machine's pace drifts over a benchmark more than between two neighbours
        "ratio": statistics.median(r / b for r, b in zip(run, bare, strict=True)),
        "report_s": statistics.median(report),
    }


def paper_fig1() -> dict[str, float]:
    """The paper-fig1 preset end to end, probes on, as `covshift run --preset paper-fig1`."""
    from covshift.headless import run_headless
    from covshift.presets import preset_config

    config = preset_config("paper-fig1", {})
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = run_headless(config, Path(out))
        seconds = time.perf_counter() - started
    figures = {"steps": float(config.steps), "seconds": seconds}
    for variant, latest in summary["variants"].items():
        figures[f"test_acc_{variant}"] = latest["test"]["acc"]
    return figures


def run_all(quick: bool) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    results = {
        "throughput": throughput(rounds=3 if quick else 7, steps=200 if quick else 1000),
        "every_step_floor": every_step_floor(repeats=100 if quick else 500),
        "probe_vs_tensorboard": probe_vs_tensorboard(repeats=5 if quick else 30),
        "ics": ics_overhead(rounds=3 if quick else 7, steps=300 if quick else 1000),
        # A default run's length in both modes: the run a user gets from `covshift run`,
        # whose fixed costs (starting the measuring process, waiting for the last frame)
        # a shorter run would weigh more than a user's run does.
        "end_to_end": end_to_end(rounds=3 if quick else 5, steps=RunConfig().steps),
    }
    if not quick:
        results["paper_fig1"] = paper_fig1()
    return results
