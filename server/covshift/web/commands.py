"""Commands to a run's worker and their answers: ids, deadlines, and the truth on a timeout.

A change carries a deadline on the machine's monotonic clock; the worker refuses one it takes
after it, so once the deadline and a short grace have passed, "not applied, and never will
be" is what happened. Used by web.run.Run, one channel per live run, on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from covshift.runtime.handle import WorkerGone, WorkerHandle
from covshift.runtime.messages import Command, Reply

log = logging.getLogger(__name__)

# How long a change may wait for the worker to take it (it takes commands between steps; a
# worker still loading its dataset, once loaded); Settings.command_timeout_s sets it.
COMMAND_TIMEOUT_S = 30.0
# How long past a change's deadline the server still waits for its answer. The worker refuses
# a command it takes after the deadline, so an answer sent before it is only in the pipe or
# the pump (milliseconds); once this grace is over, "not applied" is the truth.
COMMAND_GRACE_S = 2.0
# Commands a run holds unanswered at once. A worker reads commands between steps, and each
# goes down its pipe from the event loop: without a cap, a flood of changes to a worker in a
# long step would fill the pipe (64 KiB) and block the whole server.
MAX_PENDING = 32


class RunNotActive(Exception):
    """A control or stop reached a run that is no longer training."""


class WorkerTimeout(Exception):
    """The worker did not take a command in time; a change was not applied, and never will be."""


class TooManyCommands(Exception):
    """MAX_PENDING commands to this run are still unanswered; this one was not sent."""


@dataclass
class _Pending:
    """A command waiting for its answer."""

    answer: asyncio.Future[str | None]
    # The worker has applied the changes and is taking the single step they asked for.
    stepping: bool = False


class CommandChannel:
    """Sends one run's commands and matches the worker's replies to them."""

    def __init__(self, run_id: str, command_timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.run_id = run_id
        self.command_timeout = command_timeout
        self._pending: dict[int, _Pending] = {}
        # Changes answered "not applied" on a timeout, whose late answer is still to come.
        self._given_up: set[int] = set()
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._pending)

    async def send(
        self,
        worker: WorkerHandle | None,
        action: Any,
        changes: dict[str, Any],
        timeout: float,
        *,
        deadline: bool,
    ) -> str | None:
        """Send a command and wait for its answer. With a deadline, the worker refuses the
        command once `timeout` has passed, and the answer is awaited a grace longer."""
        if worker is None:
            raise RunNotActive(f"run {self.run_id} has no worker")
        if len(self._pending) >= MAX_PENDING:
            raise TooManyCommands(
                f"run {self.run_id} has {MAX_PENDING} changes waiting for its worker; "
                "this one was not sent (try again once they are answered)"
            )
        limit = time.monotonic() + timeout if deadline else None
        command = Command(next(self._ids), action, changes, limit)
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._pending[command.id] = pending
        try:
            worker.send(command)
            wait = timeout + COMMAND_GRACE_S if deadline else timeout
            return await asyncio.wait_for(pending.answer, wait)
        except WorkerGone:
            raise RunNotActive(f"run {self.run_id} has ended") from None
        except asyncio.TimeoutError:
            if pending.stepping:
                return None  # applied; the step it asked for is still being taken
            if deadline:
                self._given_up.add(command.id)
                raise self._not_taken() from None
            raise WorkerTimeout(
                f"run {self.run_id}: the worker did not answer in {timeout:g} s"
            ) from None
        finally:
            self._pending.pop(command.id, None)

    def answer(self, reply: Reply) -> None:
        """The worker's reply to one of this channel's commands."""
        if reply.id in self._given_up:
            self._given_up.discard(reply.id)
            if not reply.expired:  # only if this server stalled for longer than the grace
                log.warning(
                    "run %s: change %d was applied after it was answered 504", self.run_id, reply.id
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

    def close(self, state: str) -> None:
        """The run ended: every command still waiting is answered that it was not carried out."""
        self._given_up.clear()  # no answer comes any more
        for pending in self._pending.values():
            if not pending.answer.done():
                what = (
                    "its step was not finished" if pending.stepping else "the change was not made"
                )
                pending.answer.set_exception(RunNotActive(f"run {self.run_id} is {state}; {what}"))

    def _not_taken(self) -> WorkerTimeout:
        return WorkerTimeout(
            f"run {self.run_id}: the worker did not take the change within "
            f"{self.command_timeout:g} s (a training step that long, or a run still loading its "
            "data); the change was not applied, and will not be"
        )
