"""A watched run: a run folder written by another process (`covshift.watch`), tailed live.

The watching process owns its folder: it appends frames.jsonl and replaces state.json,
whose "heartbeat" it refreshes every few seconds while it lives. This server only reads
them: new complete lines go to the run's history and clients as a live run's messages
do, so a watched run and a built-in one are the same thing to the API and the page. The
run ends when its file records its end, or when the heartbeat stops (the process died
without closing the run): then, and only then, the server ends the file as a recovery
would, with a "stopped" event, so the folder reads as every other ended run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Executor
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from covshift.wire import encode, state_event

from . import recovery, storefs
from .audience import Audience
from .commands import COMMAND_TIMEOUT_S, RunNotActive, WorkerTimeout
from .lifecycle import RunInfo, RunState
from .store import MAX_LINE_BYTES, RunStore

log = logging.getLogger(__name__)

# How often the file is read for new lines: a frame shows within this (plus the watcher's
# own flush) of being measured.
POLL_S = 0.25
CONTROLS_REFUSED = (
    "live controls belong to the server's own runs: a watched run is trained by its own "
    "process, so change its settings there"
)


class FollowedRun(Audience):
    """A run trained by another process, read from its folder as it grows."""

    demo = False
    stored = True
    pid = None
    commands_pending = 0

    def __init__(
        self,
        info: RunInfo,
        pool: Executor,
        store: RunStore,
        history_frames: int,
        command_timeout: float = COMMAND_TIMEOUT_S,
    ):
        super().__init__(info.id, store, history_frames, live=True)
        self.created = info.created
        self.config = info.config
        self.state = info.state
        self.error = info.error
        self.ended = info.ended
        self._info = info
        self._pool = pool
        self._command_timeout = command_timeout
        self._control_seq = 0  # control.json's last seq from this server
        self._answers: dict[int, asyncio.Future[None]] = {}
        self._offset = 0
        self._file: IO[bytes] | None = None
        self._task: asyncio.Task[None] | None = None

    def info(self) -> RunInfo:
        return self._info.model_copy(
            update={
                "state": self.state,
                "error": self.error,
                "ended": self.ended,
                "clients": len(self.clients),
            }
        )

    # ---- following ----

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"covshift-follow-{self.id}")

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        checked = 0.0
        try:
            while self.state.active:
                lines = await loop.run_in_executor(self._pool, self._read_new)
                self._apply(lines)
                now = loop.time()
                if self.state.active and now - checked >= 1.0:
                    checked = now
                    await loop.run_in_executor(self._pool, self._check_heartbeat)
                if self.state.active:
                    await asyncio.sleep(POLL_S)
        except Exception:  # a server bug must not leave the run "running" forever
            log.exception("run %s: following its folder failed", self.id)
            self._end(RunState.STOPPED, "the server could not read the watched run's folder")
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None
            self.history = None  # an ended run replays from its file

    def _read_new(self) -> list[str]:
        """Runs in a pool thread: the complete lines appended since the last read. A line
        still being written is left for the next read; one longer than MAX_LINE_BYTES is
        damage, read past and never held whole."""
        if self._file is None:
            self._file = self._store.open_frames(self.id)
            if self._file is None:
                return []
        self._file.seek(self._offset)
        lines = []
        while data := self._file.readline(MAX_LINE_BYTES + 1):
            length = len(data)
            if not data.endswith(b"\n"):
                if length <= MAX_LINE_BYTES:
                    break  # half-written: read again from its start next time
                while data and not data.endswith(b"\n"):
                    data = self._file.readline(MAX_LINE_BYTES + 1)
                    length += len(data)
                if not data:
                    break
                self._offset += length
                continue
            self._offset += length
            with contextlib.suppress(UnicodeDecodeError):
                lines.append(data[:-1].decode("utf-8"))
        return lines

    def _apply(self, lines: list[str]) -> None:
        for line in lines:
            record = storefs.parse_message(line)  # once: a frame is tens of KB
            if record is None:
                continue
            kind = record["type"]
            if kind == "hello":
                self.hello = line
                self.broadcast(line, False)
                continue
            self.deliver(line, kind == "frame")
            if kind == "event":
                self._answered(record)
                end = recovery.recorded_end([line])
                if end is not None:
                    note = end.get("message")
                    self._end(RunState(end["state"]), note if isinstance(note, str) else None)
            elif kind == "frame":
                self._progress(record)

    def _answered(self, record: dict[str, Any]) -> None:
        """A change the watcher took: its event names the control.json seq it answers."""
        seq, lr = record.get("control"), record.get("value")
        if record.get("kind") != "lr" or not isinstance(seq, int):
            return
        if isinstance(lr, (int, float)) and not isinstance(lr, bool):
            with contextlib.suppress(ValueError):
                self._info = RunInfo.model_validate({**self._info.model_dump(), "lr": lr})
        answered = self._answers.get(seq)
        if answered is not None and not answered.done():
            answered.set_result(None)

    def _progress(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        update: dict[str, Any] = {}
        if isinstance(step, int) and not isinstance(step, bool):
            update["step"] = step + 1
        for key in ("lr", "batch_size"):
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                update[key] = value
        with contextlib.suppress(ValueError):
            self._info = RunInfo.model_validate({**self._info.model_dump(), **update})

    def _check_heartbeat(self) -> None:
        """Runs in a pool thread: end the run when its process stopped beating."""
        try:
            state = storefs.read_object(
                self._store.folder(self.id), "state.json", recovery.MAX_JSON_BYTES
            )
        except storefs.Damaged:
            state = {}
        if recovery.heartbeat_alive(state):
            return
        if state.get("state") in recovery.ENDS:
            return  # its end is in the file too; the next read finds it
        # Lines written between the last read and the process's death are read first.
        self._apply(self._read_new())
        if self.state.active:
            ended = self._store.recover(self.info(), recovery.ABANDONED)
            self._end(ended.state, ended.error)

    def _end(self, state: RunState, error: str | None) -> None:
        if not self.state.active:
            return
        self.state = state
        self.error = error if error is not None else self.error
        self.ended = datetime.now(timezone.utc)
        if error == recovery.ABANDONED:  # the file's end was written by `recover`
            self.broadcast(encode(state_event(self._info.step, "stopped", message=error)), False)

    # ---- the rest of the Run interface the API and the websocket use (attach, snapshot
    # and detach are the Audience's) ----

    def export_lines(self) -> list[str] | None:
        return None  # always stored: exported from its file

    async def control(self, changes: dict[str, Any]) -> str | None:
        """The one change a watched run may take, when its program opted in (watch(...,
        live_lr=True), config "controls"): the learning rate, written to control.json with
        a deadline for the watcher to take between two steps. None once its event says it
        was applied; WorkerTimeout (504) when not taken by the deadline, after which the
        watcher never takes it."""
        allowed = set(self.config.get("controls") or [])
        if not changes or not set(changes) <= allowed:
            raise RunNotActive(CONTROLS_REFUSED)
        if not self.state.active:
            raise RunNotActive(f"run {self.id} is {self.state.value}; it takes no more changes")
        loop = asyncio.get_running_loop()
        self._control_seq += 1
        seq = self._control_seq
        answered: asyncio.Future[None] = loop.create_future()
        self._answers[seq] = answered
        deadline = datetime.now(timezone.utc) + timedelta(seconds=self._command_timeout)
        record = {"seq": seq, "lr": changes["lr"], "deadline": deadline.isoformat()}
        try:
            await loop.run_in_executor(self._pool, self._store.write_control, self.id, record)
            await asyncio.wait_for(asyncio.shield(answered), self._command_timeout)
        except asyncio.TimeoutError:
            raise WorkerTimeout(
                f"run {self.id}: its program did not take the change within "
                f"{self._command_timeout:g} s (is its loop paused?); it was not applied and "
                "never will be"
            ) from None
        finally:
            self._answers.pop(seq, None)
        return None

    async def stop(self, reason: str | None = None) -> None:
        """The server lets go of the run (at shutdown); it never stops another process."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
