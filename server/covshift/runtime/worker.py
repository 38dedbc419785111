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
import ctypes
import logging
import resource
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
# A paced run late by up to this much catches up at full speed; later than that it does not.
PACE_SLACK_S = 0.25

# Above a worker's memory limit, room to say that it ran out (encode and send the failure).
REPORT_HEADROOM_MB = 64

EVERY_VARIANT_DIVERGED = (
    "every variant diverged (its loss became NaN or infinite); nothing is left to train. "
    "Try a lower learning rate in a new run"
)


def worker_main(
    config_json: str,
    commands: Connection,
    outputs: Connection,
    memory_limit_mb: int | None = None,
) -> None:
    """Train one run in this worker process (its job, from process.process_main)."""
    logging.basicConfig(level=logging.INFO, format="covshift worker: %(message)s")
    # A broken pipe means the server went away: nobody is left to train for.
    with contextlib.suppress(BrokenPipeError, EOFError, ConnectionResetError):
        _Worker(commands, outputs, memory_limit_mb).run(config_json)


# Allocations of this size or more get a mapping of their own, unmapped when freed. glibc
# otherwise raises its threshold to the largest block freed so far (up to 32 MiB); big tensors
# then come from the heap, where a freed one stays resident behind a live small block. A
# worker of all ten variants at depth 2, width 256, batch 1024 peaked so anywhere from 933 to
# 1148 MiB from start to start, past its memory estimate (1011); with the threshold fixed,
# at 870 MiB every start. Training runs within 1.3% of the speed it had without it.
MMAP_THRESHOLD_BYTES = 128 << 10
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def steady_allocator() -> bool:
    """Fix glibc's mmap threshold, so freed tensors leave the process and its peak memory
    is the same from start to start; False where the C library has no mallopt (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def hold_memory(limit_mb: int) -> None:
    """Limit this process's data memory (RLIMIT_DATA: heap and private writable mappings,
    which is where tensors live; not RLIMIT_AS, which also counts the ~0.4 GB of mapped
    libraries and reserved address space). Past it an allocation fails (MemoryError, or
    torch's "can't allocate memory"), the run fails saying so, and the machine is spared.
    The hard limit leaves REPORT_HEADROOM_MB for saying it."""
    soft, hard = limit_mb << 20, (limit_mb + REPORT_HEADROOM_MB) << 20
    _, ceiling = resource.getrlimit(resource.RLIMIT_DATA)
    if ceiling != resource.RLIM_INFINITY:  # an operator's own limit stays the stricter
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def out_of_memory(exc: BaseException) -> bool:
    """An allocation failed: Python's MemoryError, or torch's CPU allocator refusing."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    )


class _Worker:
    def __init__(
        self, commands: Connection, outputs: Connection, memory_limit_mb: int | None = None
    ) -> None:
        self.commands = commands
        self.outputs = outputs
        self.memory_limit_mb = memory_limit_mb
        self.paused = False
        self.status_sent_at = 0.0
        self.next_step_at = 0.0  # when a paced run may take its next step

    def run(self, config_json: str) -> None:
        import torch

        from covshift.config import RunConfig
        from covshift.train.trainer import Trainer

        torch.set_num_threads(1)  # small nets: one thread is fastest and leaves cores free
        try:
            config = RunConfig.model_validate_json(config_json)
            # After the imports (their memory counts, they cannot fail half-way); not on a
            # GPU, whose driver's host mappings were not measured under the limit.
            if self.memory_limit_mb is not None and config.device == "cpu":
                hold_memory(self.memory_limit_mb)
            trainer = Trainer(config)
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
            if config.steps_per_s is not None:
                self.keep_pace(config.steps_per_s)

    def keep_pace(self, steps_per_s: float) -> None:
        """Wait until the next step is due; a command ends the wait early (the loop obeys it
        next). After a pause or a slow step the run goes on at the pace, without a burst."""
        now = time.monotonic()
        self.next_step_at = max(self.next_step_at, now - PACE_SLACK_S) + 1 / steps_per_s
        if self.next_step_at > now:
            self.commands.poll(self.next_step_at - now)

    def train_step(self, trainer: Trainer, frame: bool = False) -> tuple[tuple[str, str], ...]:
        produced = []
        for record in trainer.train_step(frame=frame):
            produced.append((str(record["type"]), encode(record)))
        return tuple(produced)

    def obey(self, trainer: Trainer, command: Command) -> bool:
        """Carry out one command; False when the worker should exit."""
        if command.action == "stop":
            event = encode(state_event(trainer.step, "stopped"))
            self.send(trainer, (("event", event),), state="stopped", reply=Reply(command.id))
            return False
        if command.deadline is not None and time.monotonic() > command.deadline:
            # The server has answered (or is about to answer) "not applied": keep it true.
            self.send(trainer, reply=Reply(command.id, expired=True))
            return True
        try:
            produced, state = self.control(trainer, command.changes)
        except CovshiftError as exc:
            self.send(trainer, reply=Reply(command.id, str(exc)))
            return True
        except Exception as exc:
            self.fail(trainer.step, exc)
            return False
        if command.changes.get("step") and not trainer.done:
            # Applied, and the step is under way: said before it, however long it takes.
            self.send(trainer, produced, state, Reply(command.id, stepping=True))
            try:
                # A step a person asked for is always shown: it records a frame.
                produced, state = self.train_step(trainer, frame=True), None
            except Exception as exc:  # as in training: the changes stand, the run fails
                self.fail(trainer.step, exc)
                return False
        self.send(trainer, produced, state=state, reply=Reply(command.id))
        return True

    def control(
        self, trainer: Trainer, changes: dict[str, Any]
    ) -> tuple[tuple[tuple[str, str], ...], str | None]:
        """Apply the changes (not the single step): the events and the new state, if any."""
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
        return tuple(produced), state

    def fail(self, step: int, exc: BaseException) -> None:
        if out_of_memory(exc):
            with contextlib.suppress(ValueError, OSError):  # the headroom, to report it
                _, hard = resource.getrlimit(resource.RLIMIT_DATA)
                resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
            reason = self.out_of_memory_reason(exc)
            log.warning(reason)
        elif isinstance(exc, CovshiftError):
            reason = str(exc)
        else:
            log.exception("training failed")
            reason = f"training failed: {type(exc).__name__}: {exc}"
        event = encode(state_event(step, "failed", message=reason))
        self.outputs.send(Output((("event", event),), state="failed", error=reason))

    def out_of_memory_reason(self, exc: BaseException) -> str:
        if self.memory_limit_mb is None:
            return f"out of memory: {type(exc).__name__}: {exc}"
        return (
            f"out of memory: the run needed more than the {self.memory_limit_mb} MB one run "
            "may use (max_run_memory_mb); start it with fewer variants, a smaller width, "
            "depth or batch_size"
        )

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
