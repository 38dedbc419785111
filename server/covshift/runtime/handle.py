"""The server's side of one worker process: spawn it, send commands, read outputs, end it.

The two one-way pipes are set up so that each side holds only its own ends: a worker
that dies, even by SIGKILL in the middle of a message, reads here as end-of-file at
once, with no polling interval to wait out.
"""

from __future__ import annotations

import multiprocessing
import signal
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from .messages import Command, Output, SweepPlan
from .sweep_worker import sweep_main
from .worker import worker_main

# One read hands the server at most this many outputs, so a burst is cut into batches.
READ_BATCH = 256


class WorkerGone(Exception):
    """The worker process has exited; nothing more can be sent to it."""


class WorkerHandle:
    """The server's side of one worker: start it, send commands, read outputs, end it."""

    def __init__(
        self,
        config_json: str,
        name: str,
        memory_limit_mb: int | None = None,
        sweep: SweepPlan | None = None,
    ) -> None:
        """Start the worker (a sweep's, given a plan); with memory_limit_mb, the OS holds it
        to that much memory."""
        context = multiprocessing.get_context("spawn")
        worker_commands, self._commands = context.Pipe(duplex=False)
        self._outputs, worker_outputs = context.Pipe(duplex=False)
        pipes = (worker_commands, worker_outputs, memory_limit_mb)
        self.process: BaseProcess = context.Process(
            target=worker_main if sweep is None else sweep_main,
            args=(config_json, *pipes) if sweep is None else (config_json, sweep, *pipes),
            name=f"covshift-run-{name}",
            daemon=True,  # never outlive the server
        )
        self.process.start()
        # Only the worker may hold these ends, or its death would never read as end-of-file.
        worker_commands.close()
        worker_outputs.close()
        self._ended = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, command: Command) -> None:
        try:
            self._commands.send(command)
        except OSError as exc:  # BrokenPipeError included
            raise WorkerGone(str(exc)) from None

    def read(self, timeout: float) -> list[Output] | None:
        """Outputs waiting (waits up to timeout for the first); None once the worker is gone
        and everything it sent has been read. Blocks: call from a thread."""
        if self._ended:
            return None
        outputs: list[Output] = []
        wait([self._outputs, self.process.sentinel], timeout)
        try:
            while len(outputs) < READ_BATCH and self._outputs.poll():
                outputs.append(self._outputs.recv())
        except (EOFError, OSError):
            self._ended = True  # the worker's end closed: it exited or was killed
        if not outputs and not self._ended and not self.process.is_alive():
            # Exited without closing its pipe end (cannot happen on POSIX; belt and braces).
            self._ended = not self._outputs.poll()
        if not outputs and self._ended:
            return None
        return outputs

    def exit_reason(self) -> str:
        """How the process ended, in words (joins it briefly)."""
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is None:
            return "the worker process stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the worker process was killed by {name}"
        return f"the worker process exited with code {code}"

    def end(self, grace: float) -> None:
        """Make sure the process is gone: wait `grace` seconds, then terminate, then kill.
        Blocks: call from a thread."""
        self.process.join(timeout=grace)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=1.0)

    def close(self) -> None:
        """Release the pipes once nothing reads them any more."""
        self._commands.close()
        self._outputs.close()
