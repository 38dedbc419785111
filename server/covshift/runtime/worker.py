"""One run's training process: a Trainer driven by commands, streaming encoded messages back.

The server talks to it through two one-way pipes. Each side closes the ends it does
not use, so a dead worker reads as end-of-file on the server's side at once (even
after SIGKILL, even mid-message) and a dead server reads as end-of-file here, which
ends the worker instead of orphaning it.

Messages are JSON-encoded here, once, in the worker's CPU time: the server stores
and forwards the same text to every client without parsing it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from covshift.errors import CovshiftError
from covshift.wire import encode, state_event

from .messages import Command, Output, Reply, Status

if TYPE_CHECKING:
    from covshift.train.trainer import Trainer

log = logging.getLogger(__name__)

# A run's step counter reaches the server at least this often, even between frames.
STATUS_EVERY_S = 0.5

EVERY_VARIANT_DIVERGED = (
    "every variant diverged (its loss became NaN or infinite); nothing is left to train. "
    "Try a lower learning rate in a new run"
)


def worker_main(config_json: str, commands: Connection, outputs: Connection) -> None:
    """Entry point of the spawned process."""
    logging.basicConfig(level=logging.INFO, format="covshift worker: %(message)s")
    # Ctrl+C in a terminal reaches the whole process group: the server decides when a
    # run stops (and records it), so the worker leaves SIGINT to it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A broken pipe means the server went away: nobody is left to train for.
    with contextlib.suppress(BrokenPipeError, EOFError, ConnectionResetError):
        _Worker(commands, outputs).run(config_json)


class _Worker:
    def __init__(self, commands: Connection, outputs: Connection) -> None:
        self.commands = commands
        self.outputs = outputs
        self.paused = False
        self.status_sent_at = 0.0

    def run(self, config_json: str) -> None:
        import torch

        from covshift.config import RunConfig
        from covshift.train.trainer import Trainer

        torch.set_num_threads(1)  # small nets: one thread is fastest and leaves cores free
        try:
            trainer = Trainer(RunConfig.model_validate_json(config_json))
        except Exception as exc:
            self.fail(0, exc)
            return
        hello = ("hello", encode(trainer.hello()))
        started = ("event", encode(state_event(0, "running")))
        self.send(trainer, (hello, started), state="running")
        while True:
            if trainer.done:
                event = encode(state_event(trainer.step, "finished"))
                self.send(trainer, (("event", event),), state="finished")
                return
            if trainer.all_diverged:  # stepping on would hold a core and a max_runs slot
                reason = EVERY_VARIANT_DIVERGED
                event = encode(state_event(trainer.step, "failed", message=reason))
                self.send(trainer, (("event", event),), state="failed", error=reason)
                return
            if self.paused or self.commands.poll():
                command: Command = self.commands.recv()  # blocks while paused
                if not self.obey(trainer, command):
                    return
                continue
            try:
                produced = self.train_step(trainer)
            except Exception as exc:
                self.fail(trainer.step, exc)
                return
            now = time.monotonic()
            if produced or now - self.status_sent_at >= STATUS_EVERY_S:
                self.send(trainer, produced)

    def train_step(self, trainer: Trainer) -> tuple[tuple[str, str], ...]:
        produced = []
        for record in trainer.train_step():
            produced.append((str(record["type"]), encode(record)))
        return tuple(produced)

    def obey(self, trainer: Trainer, command: Command) -> bool:
        """Carry out one command; False when the worker should exit."""
        if command.action == "stop":
            event = encode(state_event(trainer.step, "stopped"))
            self.send(trainer, (("event", event),), state="stopped", reply=Reply(command.id))
            return False
        try:
            produced, state = self.control(trainer, command.changes)
        except CovshiftError as exc:
            self.send(trainer, reply=Reply(command.id, str(exc)))
            return True
        except Exception as exc:
            self.fail(trainer.step, exc)
            return False
        self.send(trainer, produced, state=state, reply=Reply(command.id))
        return True

    def control(
        self, trainer: Trainer, changes: dict[str, Any]
    ) -> tuple[tuple[tuple[str, str], ...], str | None]:
        paused = bool(changes.get("paused", self.paused))
        if changes.get("step") and not paused:
            raise CovshiftError("step: single steps are for a paused run; pause it first")
        events: list[dict[str, Any]] = []
        # batch_size first: the only change the trainer can still refuse (e.g. larger
        # than the data), so a refused command changes nothing.
        # Sent at once, so a paused run shows them too; the trainer emits each only here.
        if "batch_size" in changes:
            events += trainer.set_batch_size(changes["batch_size"])
        if "bn_momentum" in changes:
            events += trainer.set_bn_momentum(changes["bn_momentum"])
        if "lr" in changes:
            events += trainer.set_lr(changes["lr"])
        produced = [("event", encode(event)) for event in events]
        state = None
        if paused != self.paused:
            self.paused = paused
            state = "paused" if paused else "running"
            produced.append(("event", encode(state_event(trainer.step, state))))
        if changes.get("step") and not trainer.done:
            produced.extend(self.train_step(trainer))
        return tuple(produced), state

    def fail(self, step: int, exc: BaseException) -> None:
        if isinstance(exc, CovshiftError):
            reason = str(exc)
        else:
            log.exception("training failed")
            reason = f"training failed: {type(exc).__name__}: {exc}"
        event = encode(state_event(step, "failed", message=reason))
        self.outputs.send(Output((("event", event),), state="failed", error=reason))

    def send(
        self,
        trainer: Trainer,
        messages: tuple[tuple[str, str], ...] = (),
        state: str | None = None,
        reply: Reply | None = None,
        error: str | None = None,
    ) -> None:
        status = Status(
            trainer.step, trainer.epoch, trainer.lr, trainer.batch_size, trainer.bn_momentum
        )
        self.outputs.send(Output(messages, status, state, error, reply))
        self.status_sent_at = time.monotonic()
