"""A watched run's folder: config, state and frames.jsonl, appended by a background thread.

The layout is the run store's (covshift/web/store.py): `covshift serve --logdir` lists the
folder, follows frames.jsonl while state.json's heartbeat is fresh and replays it later.
The training thread only offers records, or jobs that make them (a frame step's
measuring), to a bounded queue; the writer thread runs the jobs one at a time in queue
order, resolves the records to JSON, appends and flushes, and refreshes the heartbeat,
so slow measuring or a slow disk costs frames (counted), never training time.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from covshift.train.packing import Packer
from covshift.wire import Json, encode, state_event

log = logging.getLogger(__name__)

# The server reads a heartbeat older than recovery.HEARTBEAT_STALE_S (30 s) as a dead
# process; every 2 s leaves it a wide margin and costs one small file write.
HEARTBEAT_S = 2.0
# Frames waiting for the writer. A waiting frame keeps its step's captured tensors (a layer's
# activations, several times over) until the writer reduces it, so the bound is memory: four
# is a few hundred steps of slack at the default `every`, and at most four steps' activations
# held on top of the training's own (on a GPU, in its memory).
QUEUE_FRAMES = 4
# How often the writer looks for a change the dashboard asked for (control.json): a person
# who moves the learning rate sees it taken within this, plus one training step.
CONTROL_POLL_S = 0.5
CONTROL_FILE = "control.json"


@dataclass(frozen=True)
class Record:
    """A message whose numbers may still be Slots in `packer` (resolved by the writer)."""

    template: dict[str, Json]
    packer: Packer | None = None


# A frame step's measuring, run by the writer thread: it returns the records to write.
Job = Callable[[], list[Record]]

# Stands for "no record came": the writer woke up only to refresh the heartbeat.
_WAKE = Record({})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class RunFolder:
    """Owns one run folder: creates it, writes its files, and runs the writer thread."""

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        self.path = path
        self.state = state  # state.json's content; the training thread updates its numbers
        self.queue: queue.Queue[Record | Job | None] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._frames: IO[str] | None = None
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0
        self.write_line: Callable[[str], None] = self._append
        # CPU seconds the writer thread spent on queued items (their measuring and writing),
        # so a benchmark can add it to the training thread's share of a frame.
        self.cpu_s = 0.0
        # Set when the user let the dashboard change the learning rate (watch(live_lr=True)):
        # the writer then polls control.json and hands a change to the training thread.
        self.controlled = False
        self._control: tuple[int, float] | None = None
        self._control_seen = 0
        self._control_lock = threading.Lock()

    @classmethod
    def new(cls, logdir: Path) -> RunFolder:
        run_id = secrets.token_urlsafe(16)
        state: dict[str, Any] = {
            "id": run_id,
            "state": "running",
            "created": now_iso(),
            "ended": None,
            "step": 0,
            "epoch": None,  # a user's loop has no epochs to tell
            "lr": None,
            "batch_size": None,
            "bn_momentum": None,
            "error": None,
            "demo": False,
            "stored": True,
            "source": "watch",
            "pid": os.getpid(),
            "heartbeat": None,
        }
        return cls(logdir / run_id, state)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, config: dict[str, Json]) -> None:
        """Create the folder and its files, then start the writer thread. state.json comes
        last: the server takes a folder for a run once it is there."""
        self.path.mkdir(parents=True, exist_ok=False)
        _write_atomic(self.path / "config.json", json.dumps(config, indent=2))
        self._frames = open(self.path / "frames.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.beat()
        self._thread = threading.Thread(target=self._run, name="covshift-watch-writer", daemon=True)
        self._thread.start()

    def offer(self, item: Record | Job) -> bool:
        """Queue a record or a job for the writer; False (and nothing queued) when the queue
        is full."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def wait(self) -> None:
        """Block until the writer has handled everything queued so far."""
        self.queue.join()

    def beat(self) -> None:
        self.state["heartbeat"] = now_iso()
        _write_atomic(self.path / "state.json", json.dumps(self.state))
        self._last_beat = time.monotonic()

    def take_control(self) -> tuple[int, float] | None:
        """The newest change the dashboard asked for and the training thread has not taken
        yet, as (seq, lr); None when there is none."""
        with self._control_lock:
            pending, self._control = self._control, None
        return pending

    def _poll_control(self) -> None:
        """Read control.json (the server writes it, atomically) for a change not seen yet.
        One whose deadline has passed is never taken: the server has answered "not
        applied" by then, and that answer must stay true."""
        try:
            record = json.loads((self.path / CONTROL_FILE).read_text(encoding="utf-8"))
            seq, lr, deadline = int(record["seq"]), float(record["lr"]), record["deadline"]
            expired = datetime.fromisoformat(deadline) <= datetime.now(timezone.utc)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("covshift.watch: %s is unreadable; no change taken", CONTROL_FILE)
            return
        if seq <= self._control_seen:
            return
        self._control_seen = seq
        if not expired and lr > 0:
            with self._control_lock:
                self._control = (seq, lr)

    def _run(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=CONTROL_POLL_S if self.controlled else HEARTBEAT_S)
            except queue.Empty:
                item = _WAKE  # nothing to write: wake up to beat
            if self.controlled:
                self._poll_control()
            if item is None:
                self.queue.task_done()
                return
            started = time.thread_time()
            try:
                for record in item() if callable(item) else [item]:
                    if record.template:
                        self._write(record)
                if time.monotonic() - self._last_beat >= HEARTBEAT_S:
                    self.beat()
            except Exception:  # a full disk must not end the training that produces frames
                log.exception("covshift.watch: could not write to %s", self.path)
            finally:
                self.cpu_s += time.thread_time() - started
                if item is not _WAKE:
                    self.queue.task_done()

    def _write(self, record: Record) -> None:
        resolved = record.template
        if record.packer is not None:
            resolved = record.packer.resolve(record.template)  # host copy of a frame's numbers
        self.write_line(encode(resolved))

    def _append(self, line: str) -> None:
        assert self._frames is not None
        self._frames.write(line + "\n")
        self._frames.flush()

    def finish(self, state: str, error: str | None) -> None:
        """Drain the queue, stop the writer, then record the end: a state event in
        frames.jsonl and the end state in state.json."""
        if self._thread is None:
            return
        self.queue.put(None)  # blocks while full: every record offered before is written
        self._thread.join()
        self._thread = None
        fields = {"message": error} if error is not None else {}
        assert self._frames is not None
        self._append(encode(state_event(self.state["step"], state, **fields)))
        self._frames.close()
        self.state.update(state=state, error=error, ended=now_iso())
        self.beat()


def _write_atomic(path: Path, text: str) -> None:
    """Replace path with text so a reader sees the old file or the new one, never a part."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
