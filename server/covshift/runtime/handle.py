"""The server's side of worker processes: spawn one, give it its job, send commands, read
outputs, end it; and keep one started ahead of the next run (ReadyWorker).

The two one-way pipes are set up so that each side holds only its own ends: a worker
that dies, even by SIGKILL in the middle of a message, reads here as end-of-file at
once, with no polling interval to wait out.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from .messages import Command, Job, Output
from .process import process_main

# One read hands the server at most this many outputs, so a burst is cut into batches.
READ_BATCH = 256


class WorkerGone(Exception):
    """The worker process has exited; nothing more can be sent to it."""


class WorkerHandle:
    """The server's side of one worker: start it, give it its job, send commands, read
    outputs, end it."""

    def __init__(self) -> None:
        """Start a worker process. It loads the training core (~2 s), then waits for its
        job (start); commands sent after the job wait in the pipe until it is loaded."""
        context = multiprocessing.get_context("spawn")
        worker_commands, self._commands = context.Pipe(duplex=False)
        self._outputs, worker_outputs = context.Pipe(duplex=False)
        self.process: BaseProcess = context.Process(
            target=process_main,
            args=(worker_commands, worker_outputs),
            name="covshift-worker",
            daemon=True,  # never outlive the server
        )
        self.process.start()
        # Only the worker may hold these ends, or its death would never read as end-of-file.
        worker_commands.close()
        worker_outputs.close()
        self._ended = False

    def start(self, job: Job) -> None:
        """Give the worker its run or sweep (once)."""
        self._send(job)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, command: Command) -> None:
        self._send(command)

    def _send(self, message: Command | Job) -> None:
        try:
            self._commands.send(message)
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


class ReadyWorker:
    """At most one worker process started before its run is known: it loads the training
    core while nobody waits, so the run that takes it trains at once (a digits run: ~0.1 s
    from its creation to its first frame, against ~4 s with a process started for it).
    Safe to call from several threads; a call blocks while a process spawns, or while an
    unused or dead one ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: WorkerHandle | None = None
        self._closed = False
        self.taken = 0  # workers taken so far

    def prepare(self) -> None:
        """Start one, unless one is ready (or still loading) or this was closed."""
        with self._lock:
            if self._closed or (self._worker is not None and self._worker.process.is_alive()):
                return
            if self._worker is not None:
                self._release(self._worker)
            self._worker = WorkerHandle()

    def take(self) -> WorkerHandle:
        """The ready worker, or a new one where none is (or it has died)."""
        with self._lock:
            worker, self._worker = self._worker, None
            self.taken += 1
        if worker is not None and worker.process.is_alive():
            return worker
        if worker is not None:
            self._release(worker)
        return WorkerHandle()

    def close(self) -> None:
        """End the ready worker, if any (it reads end-of-file and exits), and start no more."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
        if worker is not None:
            self._release(worker)

    @staticmethod
    def _release(worker: WorkerHandle) -> None:
        """End a worker that never had a job: one that waits reads end-of-file and exits
        (~1 s, most of it Python unloading PyTorch); one still loading is terminated after
        the grace (it has nothing to save)."""
        worker.close()
        worker.end(grace=2.0)
