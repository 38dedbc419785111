"""One sweep's process: run_sweep over a plan's values, a `point` message per finished point,
then the whole result as a `sweep` message; commands answered while a point trains.

The sweep itself runs in the main thread (as torch prefers). A second thread reads the
command pipe, so a stop is answered at once, even in the middle of a long point: it records
the stop and ends the process (a point half trained is worth nothing to keep). A sweep takes
no live changes; each one is answered with the reason. Pipes, memory limit and encoding are
as in worker.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from covshift.errors import CovshiftError
from covshift.presets import PRESETS
from covshift.wire import Json, encode, message, state_event

from .messages import Command, Output, Reply, Status, SweepPlan
from .worker import hold_memory, out_of_memory

if TYPE_CHECKING:
    from covshift.config import RunConfig

log = logging.getLogger(__name__)

NO_CHANGES = (
    "a sweep takes no live changes: each point runs with the values it was given; "
    "stop it and start another"
)


def sweep_main(
    config_json: str,
    plan: SweepPlan,
    commands: Connection,
    outputs: Connection,
    memory_limit_mb: int | None = None,
) -> None:
    """Run one sweep in this worker process (its job, from process.process_main)."""
    logging.basicConfig(level=logging.INFO, format="covshift sweep: %(message)s")
    with contextlib.suppress(BrokenPipeError, EOFError, ConnectionResetError):
        _SweepWorker(plan, commands, outputs, memory_limit_mb).run(config_json)


class _SweepWorker:
    def __init__(
        self,
        plan: SweepPlan,
        commands: Connection,
        outputs: Connection,
        memory_limit_mb: int | None,
    ) -> None:
        self.plan = plan
        self.commands = commands
        self.outputs = outputs
        self.memory_limit_mb = memory_limit_mb
        self.config: RunConfig | None = None
        self.done = 0  # points finished
        self.point_started = time.perf_counter()
        # One writer at a time on the output pipe; `ended` is set, under it, by whoever
        # records the sweep's end, so a stop after the finish records nothing more.
        self.lock = threading.Lock()
        self.ended = False
        # The fields the preset derives from the swept value (the lr and steps of a batch
        # sweep with matched epochs), declared once with the preset.
        sweep = PRESETS[plan.preset].sweep if plan.preset in PRESETS else None
        self.scale = sweep.scale if sweep is not None and sweep.field == plan.field else None

    def run(self, config_json: str) -> None:
        import torch

        from covshift.config import RunConfig
        from covshift.train.data import load_dataset
        from covshift.train.sweep import run_sweep

        torch.set_num_threads(1)  # as worker.py: one thread is fastest for these nets
        try:
            config = self.config = RunConfig.model_validate_json(config_json)
            if self.memory_limit_mb is not None and config.device == "cpu":
                hold_memory(self.memory_limit_mb)
            data = load_dataset(config.dataset, config.data_dir)
        except Exception as exc:
            self.fail(exc)
            return
        hello = message(
            "hello",
            kind="sweep",
            preset=self.plan.preset,
            config=config.model_dump(mode="json", exclude={"data_dir"}),
            field=self.plan.field,
            values=list(self.plan.values),
            **({"scale": self.scale.to_json()} if self.scale is not None else {}),
            dataset={"name": data.name, "n_train": len(data.y_train), "n_test": len(data.y_test)},
        )
        started = state_event(0, "running")
        self.send((("hello", encode(hello)), ("event", encode(started))), state="running")
        threading.Thread(target=self.listen, name="covshift-sweep-commands", daemon=True).start()
        self.point_started = time.perf_counter()
        try:
            result = run_sweep(
                config, self.plan.field, self.plan.values, self.on_point, data, scale=self.scale
            )
        except Exception as exc:
            self.fail(exc)
            return
        result.pop("type")
        whole = message("sweep", preset=self.plan.preset, **result)
        finished = state_event(self.done, "finished")
        self.send((("sweep", encode(whole)), ("event", encode(finished))), "finished", end=True)

    def on_point(self, done: int, total: int, point: dict[str, Json]) -> None:
        now = time.perf_counter()
        seconds, self.point_started = now - self.point_started, now
        self.done = done
        record = message(
            "point",
            index=done - 1,
            total=total,
            field=self.plan.field,
            **point,
            seconds=seconds,
        )
        self.send((("point", encode(record)),))

    def listen(self) -> None:
        """The command thread: a stop ends the process once it is recorded."""
        while True:
            try:
                command: Command = self.commands.recv()
            except (EOFError, OSError):
                os._exit(0)  # the server is gone: nobody is left to sweep for
            if command.action == "stop":
                stopped = encode(state_event(self.done, "stopped"))
                self.send((("event", stopped),), "stopped", Reply(command.id), end=True)
                # Not a return: the main thread is inside a point and would train it out.
                os._exit(0)
            self.send(reply=Reply(command.id, NO_CHANGES))

    def fail(self, exc: BaseException) -> None:
        if out_of_memory(exc):
            reason = (
                f"out of memory: a point of the sweep needed more than the "
                f"{self.memory_limit_mb} MB one run may use (max_run_memory_mb)"
                if self.memory_limit_mb is not None
                else f"out of memory: {type(exc).__name__}: {exc}"
            )
            log.warning(reason)
        elif isinstance(exc, CovshiftError):
            reason = str(exc)
        else:
            log.exception("the sweep failed")
            reason = f"the sweep failed: {type(exc).__name__}: {exc}"
        event = encode(state_event(self.done, "failed", message=reason))
        self.send((("event", event),), "failed", error=reason, end=True)

    def status(self) -> Status:
        """Step counts finished points; the swept field shows the point training now."""
        config = self.config
        if config is None:
            return Status(0, 0.0, None, None, None)
        values: dict[str, Any] = {
            "lr": config.lr,
            "batch_size": config.batch_size,
            "bn_momentum": config.bn_momentum,
        }
        value = self.plan.values[min(self.done, len(self.plan.values) - 1)]
        values[self.plan.field] = value
        if self.scale is not None:
            values.update(self.scale.derive(config, value))
        return Status(self.done, 0.0, values["lr"], values["batch_size"], values["bn_momentum"])

    def send(
        self,
        messages: tuple[tuple[str, str], ...] = (),
        state: str | None = None,
        reply: Reply | None = None,
        error: str | None = None,
        end: bool = False,
    ) -> None:
        with self.lock:
            if self.ended:  # the sweep's end is recorded: nothing may follow it but a reply
                messages, state, error = (), None, None
                if reply is None:
                    return
            self.ended = self.ended or end
            self.outputs.send(Output(messages, self.status(), state, error, reply))
