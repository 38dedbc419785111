"""Where a frame is measured: on the training thread, or in a process beside it.

A probed step's frame costs more than the step (the test split scored three ways, the
fixed probe set passed through every variant, every tap sorted). A small network's step
is bound by Python, so a second thread only takes turns with training for the
interpreter; a second process runs on a core of its own. Measured apart, the trainer
hands over a FrameJob (the step's captured tensors, its losses and gradient norms, and
copies of every variant's parameters, buffers and normalizer state before and after the
step's forward) and trains on; the frame comes back a few steps later, made by the same
code from the same numbers, so it is the frame the training thread would have made.

The process is forked once the trainer is built, as PyTorch's DataLoader forks its
workers: it starts at once with the data, the models and the calibrated probe in hand.
One job is in flight at a time, so a frame never waits behind another and neither
side can block the other on a full pipe.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import os
import pickle
import select
import signal
import sys
from dataclasses import dataclass
from itertools import chain
from multiprocessing.connection import Connection
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from covshift.errors import CovshiftError
from covshift.wire import Json

from .data import Dataset
from .fixed_drift import FixedDataDrift
from .frames import Metrics, Pass, StepView, build_frame
from .handover import SharedTensors, pack, unpack
from .inference import evaluate
from .models import Network
from .norms import BatchRenorm, NoisyBatchNorm
from .probes import Probe

ModelState = dict[str, Any]  # name -> a tensor (or None, for a normalizer's unset state)


@dataclass(frozen=True)
class FrameJob:
    """Everything a probed step's frame is made from."""

    view: StepView
    passes: dict[str, Pass]
    grad_norms: dict[str, torch.Tensor]  # trained variant -> (layers,)
    shifts: dict[str, Metrics]
    diverging: dict[str, int]  # variant -> the first step whose loss was non-finite
    # The test scores, when the trainer scored them; else `before` is scored.
    tests: dict[str, Metrics] | None = None
    # Measured apart: each variant to score, as it was when the step began, and the
    # statistics of its cumulative averages then (compare_cumulative)
    before: dict[str, ModelState] = dataclasses.field(default_factory=dict)
    cumulative: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = dataclasses.field(
        default_factory=dict
    )
    # Measured apart: each trained variant as it was after the step's forward and backward
    after: dict[str, ModelState] = dataclasses.field(default_factory=dict)


def model_state(model: nn.Module, copied: bool = True) -> ModelState:
    """What a frame reads of the model and a step or a control changes: parameters,
    buffers, BN's momentum, Batch Renorm's last r, d and limits, and every noise
    generator's state. Buffers are copied (a forward moves them), unless `copied` is
    False: a state handed over before the next forward (the handover copies it).
    Parameters are not (only the update moves them, after the job is handed over), so a
    job's states before and after the forward share them."""
    state: ModelState = {name: p.detach() for name, p in model.named_parameters()}
    state |= {name: buffer.clone() if copied else buffer for name, buffer in model.named_buffers()}
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):  # a control changes it during a run
            state[f"{name}.momentum"] = module.momentum
        if isinstance(module, BatchRenorm):
            state[f"{name}.last_r"] = module.last_r
            state[f"{name}.last_d"] = module.last_d
            state[f"{name}.last_limits"] = module.last_limits
        if isinstance(module, NoisyBatchNorm):
            state[f"{name}.generator"] = module.generator.get_state()
    return state


@torch.no_grad()
def load_model_state(model: nn.Module, state: ModelState) -> None:
    """Put a model_state of a model of the same build into this one, in place."""
    for name, tensor in chain(model.named_parameters(), model.named_buffers()):
        tensor.copy_(state[name])
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            module.momentum = state[f"{name}.momentum"]
        if isinstance(module, BatchRenorm):
            module.last_r = state[f"{name}.last_r"]
            module.last_d = state[f"{name}.last_d"]
            module.last_limits = state[f"{name}.last_limits"]
        if isinstance(module, NoisyBatchNorm):
            module.generator.set_state(state[f"{name}.generator"])


class FrameMaker:
    """Makes frames from jobs, with its own probe and fixed-data drift (both keep history
    from frame to frame) over the given models, which a job's states are loaded into."""

    def __init__(
        self,
        models: dict[str, Network],
        data: Dataset,
        probe: Probe,
        fixed_drift: FixedDataDrift,
        loss_fn: nn.Module,
    ) -> None:
        self.models = models
        self.data = data
        self.probe = probe
        self.fixed_drift = fixed_drift
        self.loss_fn = loss_fn

    def make(self, job: FrameJob) -> dict[str, Json]:
        tests = job.tests
        if tests is None:
            tests = {}
            for variant, state in job.before.items():
                model = self.models[variant]
                load_model_state(model, state)
                tests[variant] = evaluate(
                    model, self.data, job.view.batch_size, self.loss_fn, job.cumulative.get(variant)
                )
        for variant, state in job.after.items():
            load_model_state(self.models[variant], state)
        return build_frame(
            job.view,
            self.models,
            self.probe,
            self.fixed_drift,
            job.passes,
            tests,
            job.shifts,
            job.grad_norms,
            job.diverging,
        )


def can_measure_apart(device: torch.device) -> bool:
    """Whether a process of its own would measure beside training rather than take turns
    with it: on the CPU (a GPU run's measuring is queued on the device already), on Linux
    (forking a process that has loaded torch is safe there, as DataLoader's workers show;
    elsewhere a new process would import torch anew), with a core left over by
    training's own threads."""
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return False
    return len(os.sched_getaffinity(0)) > torch.get_num_threads()


class MeasuringError(CovshiftError):
    """The measuring process ended without making the frame it was given."""


class MeasuringApart:
    """A forked process that makes frames from jobs, one in flight at a time."""

    def __init__(self, maker: FrameMaker) -> None:
        context = multiprocessing.get_context("fork")
        self._shared = SharedTensors()
        self._connection, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(maker, self._shared, theirs, self._connection), daemon=True
        )
        # As Python's gc documentation advises before a fork without exec: the objects the
        # process starts with (the models, the data, all of torch's) are frozen for its
        # collector, whose passes would otherwise write to every page they sit on and so
        # copy the page from the trainer's. The trainer's own collector keeps them.
        gc.freeze()
        try:
            self._process.start()
        finally:
            gc.unfreeze()
        theirs.close()
        self._in_flight = False
        # Asked every step whether the frame is back: one poll(2) on the pipe, a few µs
        # (Connection.poll builds a selector each time).
        self._frame_back = select.poll()
        self._frame_back.register(self._connection.fileno(), select.POLLIN)

    @property
    def busy(self) -> bool:
        return self._in_flight

    def submit(self, job: FrameJob) -> None:
        """Hand the job over; the previous job's frame must have been taken (result)."""
        assert not self._in_flight, "one job at a time: take the previous frame first"
        payload = pack(job, self._shared)
        try:
            self._connection.send_bytes(payload)
        except OSError:  # a broken pipe: the process is gone
            raise self._ended() from None
        self._in_flight = True

    def done(self) -> bool:
        """Whether the job in flight has its frame ready, without waiting (or the process
        ended: result() then says so)."""
        return self._in_flight and bool(self._frame_back.poll(0))

    def result(self) -> dict[str, Json]:
        """The frame of the job in flight, waiting for it; the job's error, raised here."""
        assert self._in_flight
        try:
            kind, value = pickle.loads(self._connection.recv_bytes())
        except (EOFError, OSError):
            raise self._ended() from None
        self._in_flight = False
        if kind == "error":
            raise value
        frame: dict[str, Json] = value
        return frame

    def _ended(self) -> MeasuringError:
        self._process.join(timeout=1)
        return MeasuringError(
            f"the measuring process ended (exit code {self._process.exitcode}) before "
            "the frame was made; the frames written so far are kept"
        )

    def close(self) -> None:
        """End the process (it exits when its end of the pipe closes)."""
        self._connection.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve(
    maker: FrameMaker, shared: SharedTensors, connection: Connection, parents: Connection
) -> None:
    """The measuring process: make each job's frame and send it back, until the pipe closes."""
    parents.close()  # only the trainer's end: its closing is this end's end-of-file
    # Ctrl+C in a terminal reaches the whole process group: the trainer's process decides
    # what happens, and this one ends with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # As DataLoader's workers: one thread, which leaves training its core (and never uses
    # the OpenMP pool the fork copied but not its threads).
    torch.set_num_threads(1)
    while True:
        try:
            job = unpack(connection.recv_bytes(), shared)
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, object] = ("frame", maker.make(job))
        except Exception as exc:  # the trainer raises it as its own
            reply = ("error", exc)
        try:
            payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an error that does not pickle still says what it was
            failed = reply[1]
            error = MeasuringError(f"measuring failed: {type(failed).__name__}: {failed}")
            payload = pickle.dumps(("error", error))
        try:
            connection.send_bytes(payload)
        except OSError:  # the trainer closed its end without waiting for this frame
            return
