"""covshift.watch on a user's own CNN: its training speed against the bare loop, one
frame's measuring (the training thread's share, and its total CPU with the writer
thread's) against TensorBoard's add_histogram of the same tensors, and memory over a long
run (the watcher keeps nothing that grows)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import covshift
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

BATCH = 64
# covshift.watch's default cadence.
EVERY = 50


def small_cnn(channels: int = 32, blocks: int = 4) -> nn.Sequential:
    """Four conv-BN-ReLU blocks on 8x8 digits, pooling after the second: a small CNN of the
    kind the issue names."""
    layers: list[nn.Module] = []
    n_in = 1
    for block in range(blocks):
        layers += [nn.Conv2d(n_in, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()]
        if block == 1:
            layers.append(nn.MaxPool2d(2))
        n_in = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
    return nn.Sequential(*layers)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(digits.target)


def _loop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, after: Callable[[torch.Tensor], None]
) -> Callable[[int], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)

    def run(steps: int) -> None:
        for _ in range(steps):
            index = torch.randint(0, len(x), (BATCH,), generator=generator)
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            after(loss)

    return run


def _rate(run: Callable[[int], None], steps: int) -> float:
    started = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - started)


def watch_throughput(rounds: int, steps: int) -> dict[str, float]:
    """Steps/s of the bare loop and of the same loop watched at the default cadence,
    interleaved round by round so machine noise hits both alike."""
    x, y = _digits()
    torch.manual_seed(0)
    bare_model, watched_model = small_cnn(), small_cnn()
    with tempfile.TemporaryDirectory() as logdir:
        watcher = covshift.watch(watched_model, name="bench", every=EVERY, logdir=logdir)
        loops = {
            "bare": _loop(bare_model, x, y, lambda loss: None),
            "watched": _loop(watched_model, x, y, lambda loss: watcher.step(loss=loss)),
        }
        for run in loops.values():
            run(EVERY)  # warm up (and the watcher's discovery pass)
        rates: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(rounds):
            for name, run in loops.items():
                rates[name].append(_rate(run, steps))
        watcher.close()
        dropped = watcher.dropped
    bare, watched = (statistics.median(rates[name]) for name in ("bare", "watched"))
    return {
        "bare_steps_per_s": bare,
        "watched_steps_per_s": watched,
        "ratio": watched / bare,
        "dropped_frames": float(dropped),
    }


def watch_vs_tensorboard(repeats: int) -> dict[str, float]:
    """One watched frame's measuring against add_histogram of the same tensors, in CPU time.

    Two costs of a frame: what the training thread spends (and the loop waits): arming the
    hooks, the hooked forward and backward over a bare one, and the frame step's copies; and
    the frame's total CPU: that plus the writer thread's reduction, encoding and writing.
    Against TensorBoard's add_histogram of the same tensors, which runs on the calling
    thread (its own writer is flushed outside the timing). CPU time (time.thread_time),
    not wall time: on this shared machine wall time also counts other processes' turns; on
    an idle core the two agree, as every step here runs on one thread."""
    from torch.utils.tensorboard import SummaryWriter

    x, y = _digits()
    torch.manual_seed(0)
    model = small_cnn()
    batch = x[:BATCH], y[:BATCH]
    with tempfile.TemporaryDirectory() as logdir:
        # every=2: steps alternate between a bare one (no hooks; its step() arms them) and a
        # frame step, on the same model and batch.
        watcher = covshift.watch(model, name="bench", every=2, logdir=logdir)
        tapped: list[torch.Tensor] = []

        def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            tapped.extend([inputs[0].detach(), output.detach()])

        def forward_backward() -> torch.Tensor:
            loss = F.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            model.zero_grad(set_to_none=True)
            return loss

        for _ in range(3):
            watcher.step(loss=forward_backward())  # discovery, then frames 1 and 2 (edges)
        writer = SummaryWriter(str(Path(logdir) / "tb"))
        handles = [
            module.register_forward_hook(keep)
            for module in model.modules()
            if isinstance(module, (nn.BatchNorm2d, nn.ReLU))
        ]
        wait, total, board, board_wall = [], [], [], []
        measured: list[torch.Tensor] = []
        for round_ in range(repeats + 1):
            watcher.flush()  # the writer has caught up: it competes with nothing timed
            tapped.clear()
            started = time.thread_time()
            loss = forward_backward()
            bare_s = time.thread_time() - started
            measured = list(tapped)  # the bare step's; the frame step's forward adds its own
            started = time.thread_time()
            watcher.step(loss=loss)  # not a frame step: it arms the next one's hooks
            loss = forward_backward()
            watcher.step(loss=loss)  # the frame step: queues its frame for the writer
            watched_s = time.thread_time() - started
            writer_before = watcher._folder.cpu_s
            watcher.flush()
            writer_s = watcher._folder.cpu_s - writer_before
            writer.flush()
            started, started_wall = time.thread_time(), time.perf_counter()
            for i, tensor in enumerate(measured):
                writer.add_histogram(f"tap/{i}", tensor, round_)
            board_s = time.thread_time() - started
            board_wall_s = time.perf_counter() - started_wall
            if round_:
                wait.append(watched_s - bare_s)
                total.append(watched_s - bare_s + writer_s)
                board.append(board_s)
                board_wall.append(board_wall_s)
        for handle in handles:
            handle.remove()
        writer.close()
        watcher.close()
        dropped = watcher.dropped
    wait_ms = max(1e-3, statistics.median(wait) * 1e3)
    cpu_ms = max(1e-3, statistics.median(total) * 1e3)
    board_ms = statistics.median(board) * 1e3
    return {
        "tensors": float(len(measured)),
        "watch_wait_ms": wait_ms,
        "watch_cpu_ms": cpu_ms,
        "tensorboard_ms": board_ms,
        "tensorboard_wall_ms": statistics.median(board_wall) * 1e3,
        "tensorboard_over_watch_wait": board_ms / wait_ms,
        "tensorboard_over_watch_cpu": board_ms / cpu_ms,
        "dropped_frames": float(dropped),  # 0: every timed step measured in full
    }


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def watch_memory(steps: int) -> dict[str, float]:
    """RSS of a watched loop after a warm-up and after `steps` more steps (a tiny model, so
    the loop is fast and any growth of the watcher's own would show)."""
    x, y = _digits()
    torch.manual_seed(0)
    model = small_cnn(channels=8, blocks=2)
    with (
        tempfile.TemporaryDirectory() as logdir,
        covshift.watch(model, name="bench", every=EVERY, logdir=logdir) as watcher,
    ):
        run = _loop(model, x, y, lambda loss: watcher.step(loss=loss))
        run(2_000)
        start = _rss_mb()
        run(steps)
        end = _rss_mb()
    return {
        "steps": float(steps),
        "rss_mb_start": start,
        "rss_mb_end": end,
        "rss_growth": end / start - 1,
    }


def run_watch_benchmark(quick: bool) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    return {
        "watch": watch_throughput(rounds=3 if quick else 7, steps=300 if quick else 1_000),
        "watch_vs_tensorboard": watch_vs_tensorboard(repeats=10 if quick else 40),
        "watch_memory": watch_memory(steps=20_000 if quick else 100_000),
    }
