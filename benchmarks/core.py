"""Probed training throughput against a bare PyTorch loop; one probe against TensorBoard."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from covshift.config import ICS_EVERY_WHEN_ON, RunConfig
from covshift.frames import Packer
from covshift.probes import capture, tap_values
from covshift.trainer import Trainer


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


def probe_vs_tensorboard(repeats: int) -> dict[str, float]:
    """One probe (all layers, all stats, one frame) against add_histogram on the same tensors."""
    from torch.utils.tensorboard import SummaryWriter

    trainer = Trainer(RunConfig())
    x, _ = trainer.next_batch()
    captured = {}
    for variant, model in trainer.models.items():
        with capture(model) as layers:
            model(x)
        captured[variant] = layers

    def probe() -> None:
        packer = Packer()
        values = {v: tap_values(trainer.models[v], layers) for v, layers in captured.items()}
        packer.resolve(trainer.probe.reduce(values, trainer.models, packer))

    tensors = [
        (f"{v}/{layer}/{tap}", tensor)
        for v, layers in captured.items()
        for layer, taps in enumerate(tap_values(trainer.models[v], layers))
        for tap, tensor in taps.items()
    ]
    with tempfile.TemporaryDirectory() as logdir:
        writer = SummaryWriter(logdir)

        def tensorboard() -> None:
            for name, tensor in tensors:
                writer.add_histogram(name, tensor, 0)

        timings: dict[str, list[float]] = {"probe": [], "tensorboard": []}
        probe()
        tensorboard()
        for _ in range(repeats):
            for name, fn in (("probe", probe), ("tensorboard", tensorboard)):
                started = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - started)
        writer.close()
    probe_ms = statistics.median(timings["probe"]) * 1e3
    tb_ms = statistics.median(timings["tensorboard"]) * 1e3
    return {
        "tensors": len(tensors),
        "probe_ms": probe_ms,
        "tensorboard_ms": tb_ms,
        "tensorboard_over_probe": tb_ms / probe_ms,
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
        "probe_vs_tensorboard": probe_vs_tensorboard(repeats=5 if quick else 30),
        "ics": ics_overhead(rounds=3 if quick else 7, steps=300 if quick else 1000),
    }
    if not quick:
        results["paper_fig1"] = paper_fig1()
    return results
