"""One run on the server: its lifecycle, the pump from its worker, its history and clients.

All methods run on the event loop, except the `_read` step of the output pump, which
blocks on the worker's pipe in a thread of the manager's pool and also appends what
it read to frames.jsonl (so disk writes stay off the loop, in arrival order). Commands
and their answers are commands.CommandChannel's; the file is runlog.RunLog's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime, timezone
from typing import Any

from covshift.config import RunConfig
from covshift.runtime.handle import WorkerGone, WorkerHandle
from covshift.runtime.messages import Command, Job, Output, Status, SweepPlan
from covshift.wire import encode, state_event

from .audience import Audience
from .commands import COMMAND_TIMEOUT_S, CommandChannel, RunNotActive, WorkerTimeout
from .lifecycle import RunInfo, RunState
from .runlog import RunLog
from .store import FramesLog, RunStore, public_config

log = logging.getLogger(__name__)

# The pump's wait on the worker's pipe; a dead worker shows as end-of-file at once,
# so this only bounds how long a read thread stays blocked.
READ_TIMEOUT_S = 0.25
# How long a stop waits for the worker to finish its step and exit before ending it.
STOP_TIMEOUT_S = 2.0


class Run(Audience):
    """One run: live (with a worker process) or read back from the store."""

    def __init__(
        self,
        info: RunInfo,
        pool: Executor,
        store: RunStore,
        history_frames: int,
        command_timeout: float = COMMAND_TIMEOUT_S,
        memory_limit_mb: int | None = None,
    ) -> None:
        # Live runs keep their history; stored runs replay from frames.jsonl instead.
        super().__init__(info.id, store, history_frames, live=not info.state.terminal)
        self.created = info.created
        self.config = info.config
        self.demo = info.demo
        self.stored = info.stored
        self.state = info.state
        self.error = info.error
        self.ended = info.ended
        self.status = Status(info.step, info.epoch, info.lr, info.batch_size, info.bn_momentum)
        self._pool = pool
        self._worker: WorkerHandle | None = None
        self._log = RunLog(self.id, None)
        self._commands = CommandChannel(self.id, command_timeout)
        self.memory_limit_mb = memory_limit_mb
        # The validated config of a run this server started (a changed batch size is checked
        # against the memory limit with it); None for a run read back from the store.
        self._run_config: RunConfig | None = None
        self._sweep: SweepPlan | None = None  # a sweep's plan: its worker runs that instead
        self._launched: asyncio.Future[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._stopping = False

    @classmethod
    def new(
        cls,
        run_id: str,
        config: RunConfig,
        pool: Executor,
        store: RunStore,
        history_frames: int,
        *,
        demo: bool,
        stored: bool,
        command_timeout: float = COMMAND_TIMEOUT_S,
        memory_limit_mb: int | None = None,
        sweep: SweepPlan | None = None,
    ) -> Run:
        info = RunInfo(
            id=run_id,
            state=RunState.CREATED,
            created=datetime.now(timezone.utc),
            config=public_config(_record(config, sweep)),
            lr=config.lr,
            batch_size=config.batch_size,
            bn_momentum=config.bn_momentum,
            demo=demo,
            stored=stored,
        )
        run = cls(info, pool, store, history_frames, command_timeout, memory_limit_mb)
        run._run_config = config
        run._sweep = sweep
        return run

    @property
    def pid(self) -> int | None:
        """The worker's process id (for operators and tests; not part of the API)."""
        return self._worker.pid if self._worker is not None else None

    @property
    def commands_pending(self) -> int:
        """Commands sent to the worker and not answered yet (for operators and tests)."""
        return len(self._commands)

    def info(self) -> RunInfo:
        return RunInfo(
            id=self.id,
            state=self.state,
            created=self.created,
            ended=self.ended,
            config=self.config,
            step=self.status.step,
            epoch=self.status.epoch,
            lr=self.status.lr,
            batch_size=self.status.batch_size,
            bn_momentum=self.status.bn_momentum,
            error=self.error,
            demo=self.demo,
            stored=self.stored,
            clients=len(self.clients),
        )

    # ---- lifecycle ----

    async def launch(
        self, config: RunConfig, worker_for: Callable[[], WorkerHandle] = WorkerHandle
    ) -> None:
        """Create the store folder and give a worker process (from worker_for: a new one, or
        one loaded ahead) this run, both off the loop."""
        loop = asyncio.get_running_loop()
        self._launched = loop.create_future()
        record = _record(config, self._sweep)
        job = Job(config.model_dump_json(), self.memory_limit_mb, self._sweep)

        def start() -> tuple[FramesLog | None, WorkerHandle]:
            frames = self._store.create(self.info(), record) if self.stored else None
            worker = worker_for()
            try:
                worker.start(job)
            except WorkerGone:  # a worker loaded ahead that died just now: a new one
                worker.close()
                worker.end(grace=0.0)
                worker = WorkerHandle()
                worker.start(job)
            return frames, worker

        try:
            frames, self._worker = await loop.run_in_executor(self._pool, start)
            self._log = RunLog(self.id, frames)
        except BaseException as exc:
            self._set_state(RunState.FAILED, f"the run could not start: {exc}")
            raise
        finally:
            self._launched.set_result(None)
        self._pump = asyncio.create_task(self._pump_outputs(), name=f"covshift-pump-{self.id}")

    async def stop(self, reason: str | None = None) -> None:
        """Stop training and keep the data; the state ends as stopped (or as it ended).
        `reason` is recorded as the run's error note when it was not the user's choice."""
        if self._launched is not None:
            await self._launched
        if not self.state.active or self._worker is None:
            return
        self._stopping = True
        self.error = reason
        loop = asyncio.get_running_loop()
        worker = self._worker
        if self.state is RunState.CREATED:
            # Still loading its data: nothing to save, so no need to wait for it.
            await loop.run_in_executor(self._pool, worker.end, 0.0)
        else:
            with contextlib.suppress(RunNotActive, WorkerTimeout):
                await self._commands.send(worker, "stop", {}, STOP_TIMEOUT_S, deadline=False)
        if self._pump is not None and not await _finishes(self._pump, STOP_TIMEOUT_S):
            await loop.run_in_executor(self._pool, worker.end, 0.0)
            await self._pump

    async def control(self, changes: dict[str, Any]) -> str | None:
        """Send validated changes to the worker; the worker's error message, or None when
        they were applied. WorkerTimeout: not taken in time, so not applied, ever."""
        if not self.state.active or self._stopping:
            raise RunNotActive(f"run {self.id} is {self.state.value}; it takes no more changes")
        config, limit = self._run_config, self.memory_limit_mb
        if "batch_size" in changes and config is not None and limit is not None:
            larger = config.model_copy(update={"batch_size": changes["batch_size"]})
            larger.check_memory(limit, changed="batch_size")  # ConfigError: 422
        timeout = self._commands.command_timeout
        return await self._commands.send(self._worker, "control", changes, timeout, deadline=True)

    # ---- the output pump ----

    async def _pump_outputs(self) -> None:
        loop = asyncio.get_running_loop()
        worker = self._worker
        assert worker is not None
        try:
            try:
                while self.state.active and self._log.error is None:
                    outputs = await loop.run_in_executor(self._pool, self._read, worker)
                    if outputs is None:
                        break
                    self._apply(outputs)
            except Exception as exc:  # a server bug must not leave the run "running" forever
                log.exception("run %s: reading its worker failed", self.id)
                self._fail(f"the server could not read the worker: {exc}")
            if self.state.active and self._log.error is not None:
                # Training on would keep nothing: fail the run and stop its worker.
                self._fail(self._log.error)
                with contextlib.suppress(WorkerGone):
                    worker.send(Command(0, "stop"))
            elif self.state.active and self._stopping:
                self._emit(encode(state_event(self.status.step, "stopped")), False)
                self._set_state(RunState.STOPPED, None)
            elif self.state.active:  # the worker ended without saying why
                self._fail(await loop.run_in_executor(self._pool, worker.exit_reason))
        finally:
            await loop.run_in_executor(self._pool, self._release, worker)
            if self.stored and self._log.error is None:
                self.history = None  # an ended stored run replays from its file

    def _fail(self, reason: str) -> None:
        log.warning("run %s failed: %s", self.id, reason)
        self._emit(encode(state_event(self.status.step, "failed", message=reason)), False)
        self._set_state(RunState.FAILED, reason)

    def _read(self, worker: WorkerHandle) -> list[Output] | None:
        """Runs in a pool thread: wait for outputs, append their messages to frames.jsonl."""
        outputs = worker.read(READ_TIMEOUT_S)
        if outputs:
            self._log.append([text for output in outputs for _, text in output.messages])
        return outputs

    def _release(self, worker: WorkerHandle) -> None:
        worker.end(STOP_TIMEOUT_S)
        worker.close()
        self._log.close()

    def _apply(self, outputs: list[Output]) -> None:
        for output in outputs:
            for kind, text in output.messages:
                if kind == "hello":
                    self.hello = text
                    self.broadcast(text, False)
                else:
                    self._emit(text, kind == "frame", record=False)
            if output.status is not None:
                self.status = output.status
            if output.reply is not None:
                self._commands.answer(output.reply)
            if output.state is not None:
                self._set_state(RunState(output.state), output.error)

    def _emit(self, text: str, is_frame: bool, record: bool = True) -> None:
        """A message to history and clients (and to the store when the pump did not)."""
        self.deliver(text, is_frame)
        if record:
            self._log.append([text])

    def _set_state(self, state: RunState, error: str | None) -> None:
        self.state = state
        if error is not None:
            self.error = error
        if state.terminal:
            self.ended = datetime.now(timezone.utc)
            self._commands.close(state.value)
        if self.stored:
            try:
                self._store.save(self.info())
            except OSError as exc:
                log.error("run %s: could not save its state: %s", self.id, exc)

    # ---- clients ----

    def export_lines(self) -> list[str] | None:
        """The messages of a run kept only in memory (hello first); None for a stored run."""
        if self.stored:
            return None
        history = self.history.snapshot() if self.history is not None else []
        return ([self.hello] if self.hello is not None else []) + history


def _record(config: RunConfig, sweep: SweepPlan | None) -> dict[str, Any]:
    """config.json: the run config as validated, and for a sweep what makes it one."""
    return {**config.model_dump(mode="json"), **(sweep.record() if sweep is not None else {})}


async def _finishes(task: asyncio.Task[None], timeout: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except asyncio.TimeoutError:
        return False
    return True
