"""One run on the server: its worker, state, bounded history, watching clients and store file.

All methods run on the event loop, except the `_read` step of the output pump, which
blocks on the worker's pipe in a thread of the manager's pool and also appends what
it read to frames.jsonl (so disk writes stay off the loop, in arrival order).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from covshift.config import RunConfig
from covshift.runtime.handle import WorkerGone, WorkerHandle
from covshift.runtime.messages import Command, Output, Reply, Status
from covshift.wire import encode, state_event

from .fanout import ClientQueue
from .history import History
from .lifecycle import RunInfo, RunState
from .store import FramesLog, RunStore, public_config

log = logging.getLogger(__name__)

# The pump's wait on the worker's pipe; a dead worker shows as end-of-file at once,
# so this only bounds how long a read thread stays blocked.
READ_TIMEOUT_S = 0.25
# How long a change may wait for the worker to take it (it takes commands between steps; a
# worker still loading its dataset, once loaded); Settings.command_timeout_s sets it.
COMMAND_TIMEOUT_S = 30.0
# How long past a change's deadline the server still waits for its answer. The worker refuses
# a command it takes after the deadline, so an answer sent before it is only in the pipe or
# the pump (milliseconds); once this grace is over, "not applied" is the truth.
COMMAND_GRACE_S = 2.0
# How long a stop waits for the worker to finish its step and exit before ending it.
STOP_TIMEOUT_S = 2.0


class RunNotActive(Exception):
    """A control or stop reached a run that is no longer training."""


class WorkerTimeout(Exception):
    """The worker did not take a command in time; a change was not applied, and never will be."""


@dataclass
class _Pending:
    """A command waiting for its answer."""

    answer: asyncio.Future[str | None]
    # The worker has applied the changes and is taking the single step they asked for.
    stepping: bool = False


class Run:
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
        self.id = info.id
        self.created = info.created
        self.config = info.config
        self.demo = info.demo
        self.stored = info.stored
        self.state = info.state
        self.error = info.error
        self.ended = info.ended
        self.status = Status(info.step, info.epoch, info.lr, info.batch_size, info.bn_momentum)
        self.hello: str | None = None
        # Live runs keep their history; stored runs replay from frames.jsonl instead.
        self.history: History | None = None if info.state.terminal else History(history_frames)
        self.history_frames = history_frames
        self.clients: set[ClientQueue] = set()
        self._pool = pool
        self._store = store
        self._worker: WorkerHandle | None = None
        self._log: FramesLog | None = None
        self.command_timeout = command_timeout
        self.memory_limit_mb = memory_limit_mb
        # The validated config of a run this server started (a changed batch size is checked
        # against the memory limit with it); None for a run read back from the store.
        self._run_config: RunConfig | None = None
        self._pending: dict[int, _Pending] = {}
        # Changes answered "not applied" on a timeout, whose late answer is still to come.
        self._given_up: set[int] = set()
        self._ids = itertools.count(1)
        self._launched: asyncio.Future[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._stopping = False
        # Set when frames.jsonl could not be written (disk full, ...): the pump fails the run.
        self._store_error: str | None = None

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
    ) -> Run:
        info = RunInfo(
            id=run_id,
            state=RunState.CREATED,
            created=datetime.now(timezone.utc),
            config=public_config(config.model_dump(mode="json")),
            lr=config.lr,
            batch_size=config.batch_size,
            bn_momentum=config.bn_momentum,
            demo=demo,
            stored=stored,
        )
        run = cls(info, pool, store, history_frames, command_timeout, memory_limit_mb)
        run._run_config = config
        return run

    @property
    def pid(self) -> int | None:
        """The worker's process id (for operators and tests; not part of the API)."""
        return self._worker.pid if self._worker is not None else None

    @property
    def commands_pending(self) -> int:
        """Commands sent to the worker and not answered yet (for operators and tests)."""
        return len(self._pending)

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

    async def launch(self, config: RunConfig) -> None:
        """Create the store folder and start the worker process (both off the loop)."""
        loop = asyncio.get_running_loop()
        self._launched = loop.create_future()
        record = config.model_dump(mode="json")

        def start() -> tuple[FramesLog | None, WorkerHandle]:
            frames = self._store.create(self.info(), record) if self.stored else None
            worker = WorkerHandle(config.model_dump_json(), self.id[:8], self.memory_limit_mb)
            return frames, worker

        try:
            self._log, self._worker = await loop.run_in_executor(self._pool, start)
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
                await self._command("stop", {}, STOP_TIMEOUT_S, deadline=False)
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
        return await self._command("control", changes, self.command_timeout, deadline=True)

    async def _command(
        self, action: Any, changes: dict[str, Any], timeout: float, *, deadline: bool
    ) -> str | None:
        """Send a command and wait for its answer. With a deadline, the worker refuses the
        command once `timeout` has passed, and the answer is awaited a grace longer."""
        if self._worker is None:
            raise RunNotActive(f"run {self.id} has no worker")
        limit = time.monotonic() + timeout if deadline else None
        command = Command(next(self._ids), action, changes, limit)
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._pending[command.id] = pending
        try:
            self._worker.send(command)
            wait = timeout + COMMAND_GRACE_S if deadline else timeout
            return await asyncio.wait_for(pending.answer, wait)
        except WorkerGone:
            raise RunNotActive(f"run {self.id} has ended") from None
        except asyncio.TimeoutError:
            if pending.stepping:
                return None  # applied; the step it asked for is still being taken
            if deadline:
                self._given_up.add(command.id)
                raise self._not_taken() from None
            raise WorkerTimeout(
                f"run {self.id}: the worker did not answer in {timeout:g} s"
            ) from None
        finally:
            self._pending.pop(command.id, None)

    def _not_taken(self) -> WorkerTimeout:
        return WorkerTimeout(
            f"run {self.id}: the worker did not take the change within {self.command_timeout:g} s "
            "(a training step that long, or a run still loading its data); "
            "the change was not applied, and will not be"
        )

    # ---- the output pump ----

    async def _pump_outputs(self) -> None:
        loop = asyncio.get_running_loop()
        worker = self._worker
        assert worker is not None
        try:
            try:
                while self.state.active and self._store_error is None:
                    outputs = await loop.run_in_executor(self._pool, self._read, worker)
                    if outputs is None:
                        break
                    self._apply(outputs)
            except Exception as exc:  # a server bug must not leave the run "running" forever
                log.exception("run %s: reading its worker failed", self.id)
                self._fail(f"the server could not read the worker: {exc}")
            if self.state.active and self._store_error is not None:
                # Training on would keep nothing: fail the run and stop its worker.
                self._fail(self._store_error)
                with contextlib.suppress(WorkerGone):
                    worker.send(Command(0, "stop"))
            elif self.state.active and self._stopping:
                self._emit(encode(state_event(self.status.step, "stopped")), False)
                self._set_state(RunState.STOPPED, None)
            elif self.state.active:  # the worker ended without saying why
                self._fail(await loop.run_in_executor(self._pool, worker.exit_reason))
        finally:
            await loop.run_in_executor(self._pool, self._release, worker)
            if self.stored and self._store_error is None:
                self.history = None  # an ended stored run replays from its file

    def _fail(self, reason: str) -> None:
        log.warning("run %s failed: %s", self.id, reason)
        self._emit(encode(state_event(self.status.step, "failed", message=reason)), False)
        self._set_state(RunState.FAILED, reason)

    def _read(self, worker: WorkerHandle) -> list[Output] | None:
        """Runs in a pool thread: wait for outputs, append their messages to frames.jsonl."""
        outputs = worker.read(READ_TIMEOUT_S)
        if outputs:
            self._record([text for output in outputs for _, text in output.messages])
        return outputs

    def _record(self, texts: list[str]) -> None:
        """Append to frames.jsonl. A failed write (disk full, ...) ends the storing for good
        and sets _store_error, which fails the run: what was written stays readable."""
        if self._log is None:
            return
        try:
            self._log.append(texts)
        except OSError as exc:
            log.error("run %s: writing %s failed: %s", self.id, self._log.path, exc)
            self._store_error = (
                f"the run's frames could not be written ({exc.strerror or exc}); "
                "it was stopped, the frames written before are kept"
            )
            with contextlib.suppress(OSError):  # closing flushes the same buffer again
                self._log.close()
            self._log = None

    def _release(self, worker: WorkerHandle) -> None:
        worker.end(STOP_TIMEOUT_S)
        worker.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _apply(self, outputs: list[Output]) -> None:
        for output in outputs:
            for kind, text in output.messages:
                if kind == "hello":
                    self.hello = text
                    self._broadcast(text, False)
                else:
                    self._emit(text, kind == "frame", record=False)
            if output.status is not None:
                self.status = output.status
            if output.reply is not None:
                self._answer(output.reply)
            if output.state is not None:
                self._set_state(RunState(output.state), output.error)

    def _answer(self, reply: Reply) -> None:
        if reply.id in self._given_up:
            self._given_up.discard(reply.id)
            if not reply.expired:  # only if this server stalled for longer than the grace
                log.warning(
                    "run %s: change %d was applied after it was answered 504", self.id, reply.id
                )
        pending = self._pending.get(reply.id)
        if pending is None or pending.answer.done():
            return
        if reply.stepping:
            pending.stepping = True
        elif reply.expired:
            pending.answer.set_exception(self._not_taken())
        else:
            pending.answer.set_result(reply.error)

    def _emit(self, text: str, is_frame: bool, record: bool = True) -> None:
        """A message to history and clients (and to the store when the pump did not)."""
        if self.history is not None:
            self.history.append(text, is_frame)
        self._broadcast(text, is_frame)
        if record:
            self._record([text])

    def _broadcast(self, text: str, is_frame: bool) -> None:
        for client in self.clients:
            client.put(text, is_frame)

    def _set_state(self, state: RunState, error: str | None) -> None:
        self.state = state
        if error is not None:
            self.error = error
        if state.terminal:
            self.ended = datetime.now(timezone.utc)
            self._given_up.clear()  # no answer comes any more
            for pending in self._pending.values():
                if not pending.answer.done():
                    what = (
                        "its step was not finished"
                        if pending.stepping
                        else "the change was not made"
                    )
                    pending.answer.set_exception(
                        RunNotActive(f"run {self.id} is {state.value}; {what}")
                    )
        if self.stored:
            try:
                self._store.save(self.info())
            except OSError as exc:
                log.error("run %s: could not save its state: %s", self.id, exc)

    # ---- clients ----

    async def attach(self, client: ClientQueue) -> tuple[str | None, list[str]]:
        """Start sending live messages to client; returns (hello, history) to send first."""
        if self.history is not None:
            # No await between the snapshot and joining: nothing is missed or sent twice.
            self.clients.add(client)
            return self.hello, self.history.snapshot()
        replay = await self.snapshot()
        self.clients.add(client)
        return replay

    async def snapshot(self) -> tuple[str | None, list[str]]:
        """(hello, messages) as a new tab gets them: the live history, or frames.jsonl replayed
        through the same downsampling. Bounded by history_frames whatever the run's length."""
        if self.history is not None:
            return self.hello, self.history.snapshot()
        # Not the pumps' pool: many tabs opening old runs must not delay live frames.
        return await asyncio.to_thread(self._store.replay, self.id, self.history_frames)

    def detach(self, client: ClientQueue) -> None:
        self.clients.discard(client)

    def export_lines(self) -> list[str] | None:
        """The messages of a run kept only in memory (hello first); None for a stored run."""
        if self.stored:
            return None
        history = self.history.snapshot() if self.history is not None else []
        return ([self.hello] if self.hello is not None else []) + history


async def _finishes(task: asyncio.Task[None], timeout: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except asyncio.TimeoutError:
        return False
    return True
