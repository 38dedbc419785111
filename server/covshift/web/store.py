"""The run store: one folder per run under the log directory, plain files, no server.

    <logdir>/<run id>/config.json    the run config as validated
    <logdir>/<run id>/frames.jsonl   the hello line, then every frame and event as it arrived
    <logdir>/<run id>/state.json     RunInfo without config: state, error, step, times

frames.jsonl has the same format as `covshift run` writes (docs/protocol.md), so a
stored run and a headless run are read the same way. It is appended from the run's
reader thread and flushed after every batch from the worker, so a server crash loses
at most what the worker had not yet handed over. state.json is replaced atomically.

One server owns a log directory at a time (`lock`). The store never follows a symbolic
link out of it: a run folder, or a file in one, that is a link is a damaged run, and every
file is opened with O_NOFOLLOW below a folder opened the same way. A run whose state.json
or config.json cannot be used is listed damaged with the reason and never written; a line
of frames.jsonl that is not a message is skipped, and counted in the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from covshift.wire import encode, state_event

from . import recovery, storefs
from .history import History
from .lifecycle import RunInfo, RunState
from .storefs import DirectoryLock

log = logging.getLogger(__name__)

# secrets.token_urlsafe output; anything else in the log directory is not ours.
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Every message starts {"v": N, "type": "..."} (frames.message): read the type without
# parsing a 50 KB frame.
_TYPE = re.compile(r'\{\s*"v"\s*:\s*\d+\s*,\s*"type"\s*:\s*"(\w+)"')
# How far back from its end a cut-off run's frames.jsonl is read to recover its last frame
# (a frame of the default config is ~30 KB).
TAIL_BYTES = 1 << 20
# A frame of the largest config the bounds allow is a few MB; a longer line is damage (e.g.
# garbage without newlines) and is skipped without being held in memory.
MAX_LINE_BYTES = 64 << 20
# The file the owning server holds its lock on (not a run id, so never listed as a run).
LOCK_FILE = ".lock"


def line_type(line: str) -> str | None:
    """A line's message type, read from its start when it starts as every message does;
    None for a line that is not a message."""
    found = _TYPE.match(line)
    if found:
        return found.group(1)
    record = storefs.parse_message(line)
    return None if record is None else str(record["type"])


class StoreError(Exception):
    """The log directory cannot be used; the message says why."""


class StoreBusy(StoreError):
    """Another covshift server owns the log directory."""


class Message(str):
    """A line of frames.jsonl that parsed as a message. `record` is what it parsed to, so a
    reader of many lines (the CSV export) need not parse each a second time."""

    record: dict[str, Any]

    def __new__(cls, line: str, record: dict[str, Any]) -> Message:
        message = super().__new__(cls, line)
        message.record = record
        return message


class FramesLog:
    """Appends message lines to one run's frames.jsonl. Used by one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = storefs.open_in(path.parent, path.name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._file: IO[str] = os.fdopen(fd, "a", encoding="utf-8")

    def append(self, texts: Iterable[str]) -> None:
        self._file.writelines(text + "\n" for text in texts)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class RunStore:
    """Creates, updates and reads back the runs in one log directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root) as probe:
                probe.write(b"covshift\n")  # a full disk still creates empty files
                probe.flush()
        except OSError as exc:
            raise StoreError(f"log directory {self.root} is not writable: {exc}") from None

    def lock(self) -> DirectoryLock:
        """Make this process the one owner of the log directory until it ends (or releases
        the lock): StoreBusy when another server owns it, with its pid when known."""
        try:
            return storefs.lock(self.root, LOCK_FILE)
        except storefs.Held as held:
            owner = f" (pid {held.pid})" if held.pid is not None else ""
            raise StoreBusy(
                f"log directory {self.root} is in use by another covshift server{owner}; "
                "stop it or choose another --logdir"
            ) from None
        except OSError as exc:
            raise StoreError(f"log directory {self.root} cannot be locked: {exc}") from None

    def folder(self, run_id: str) -> Path:
        if not RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id

    def frames_path(self, run_id: str) -> Path:
        return self.folder(run_id) / "frames.jsonl"

    def open_frames(self, run_id: str) -> IO[bytes] | None:
        """frames.jsonl opened for reading, when it is a regular file in a run folder that is
        not a link either (opened without following one, so nothing can swap a link in
        between a check and the open); None otherwise. The caller closes it."""
        try:
            fd = storefs.open_in(self.folder(run_id), "frames.jsonl", os.O_RDONLY)
        except OSError:
            return None
        return os.fdopen(fd, "rb")

    def create(self, info: RunInfo, config: dict[str, Any]) -> FramesLog:
        folder = self.folder(info.id)
        folder.mkdir(parents=True)
        fd = storefs.open_in(folder, "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(json.dumps(config, indent=2) + "\n")
        self.save(info)
        return FramesLog(folder / "frames.jsonl")

    def write_control(self, run_id: str, record: dict[str, Any]) -> None:
        """Replace a watched run's control.json (what the dashboard asks its program to
        change): the one file the server writes in a folder another process owns."""
        self._replace(run_id, "control.json", json.dumps(record) + "\n")

    def save(self, info: RunInfo) -> None:
        """Replace state.json atomically (a crash leaves the old or the new one, never half),
        inside the run folder: OSError when the folder is a link."""
        text = info.model_dump_json(exclude={"config", "clients"}, indent=2) + "\n"
        self._replace(info.id, "state.json", text)

    def _replace(self, run_id: str, name: str, text: str) -> None:
        """Write a temporary file in the run folder and rename it over `name`, never through
        a link."""
        temporary = f".{name.removesuffix('.json')}-{secrets.token_hex(8)}.json"
        folder_fd = storefs.open_folder(self.folder(run_id))
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | storefs.NOFOLLOW
            fd = os.open(temporary, flags, 0o600, dir_fd=folder_fd)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(text)
                os.replace(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            except OSError:
                # e.g. disk full: leave no stray file
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=folder_fd)
                raise
        finally:
            os.close(folder_fd)

    def load(self) -> list[RunInfo]:
        """Every stored run, oldest first. A run still marked active was cut off by a crash
        or a kill of the server: it is recovered (see `recover`) and saved so. A run whose
        files cannot be used is listed damaged, with the reason, and never written."""
        if not self.root.is_dir():
            return []
        with os.scandir(self.root) as entries:
            names = sorted(entry.name for entry in entries if RUN_ID.match(entry.name))
        runs = [info for name in names if (info := self._load_run(name)) is not None]
        runs.sort(key=lambda info: info.created)
        return runs

    def load_new(self, known: set[str]) -> list[RunInfo]:
        """Watched runs (config.json "source": "watch") whose folders are not among `known`
        ids: the ones another process started since the last look, loaded as `load` does.
        Only watched runs: a new folder of any other kind is this server's own, being
        created (never to be recovered from under its worker). A folder without its
        state.json yet is being created too: left for the next look."""
        if not self.root.is_dir():
            return []
        with os.scandir(self.root) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if RUN_ID.match(entry.name) and entry.name not in known
            )
        runs = []
        for name in names:
            found = recovery.read_folder(self.root / name)
            if found is None or found.config.get("source") != "watch" or not found.state:
                continue
            info = self._load_run(name)
            if info is not None:
                runs.append(info)
        return runs

    def _load_run(self, run_id: str) -> RunInfo | None:
        found = recovery.read_folder(self.root / run_id)
        if found is None:
            return None
        info = recovery.run_info(run_id, found)
        if info.state is RunState.DAMAGED:
            log.warning("run %s is damaged: %s", run_id, info.error)
        elif info.state.active and info.source == "watch":
            # Its own process writes it: followed while that process beats, else recovered.
            if not recovery.heartbeat_alive(found.state):
                info = self.recover(info, recovery.ABANDONED)
        elif info.state.active:
            info = self.recover(info)
        return info.model_copy(update={"config": public_config(found.config)})

    def recover(self, info: RunInfo, note: str | None = None) -> RunInfo:
        """A run cut off while active: its state as its frames.jsonl last recorded it (see
        recovery.recovered), saved. When that is stopped, a "stopped" state event is
        appended (after cutting off a half-written last line), so the file ends as every
        other ended run's does."""
        folder = self.folder(info.id)
        lines, complete = recovery.tail(folder, TAIL_BYTES)
        recovered = recovery.recovered(info, lines, note)
        try:
            # Appended only when the file does not end with the run's own end already (a
            # crash between writing its "stopped" and saving state.json): one event, once.
            ended = recovery.recorded_end(lines) is not None
            if recovered.state is RunState.STOPPED and complete is not None and not ended:
                fd = storefs.open_in(folder, "frames.jsonl", os.O_RDWR)
                with os.fdopen(fd, "r+b") as file:
                    file.truncate(complete)
                    file.seek(complete)
                    event = state_event(
                        recovered.step, "stopped", **({"message": note} if note else {})
                    )
                    file.write((encode(event) + "\n").encode())
        except OSError as exc:
            log.warning("run %s: could not end its frames.jsonl: %s", info.id, exc)
        try:
            self.save(recovered)
        except OSError as exc:
            log.warning("run %s: could not save its recovered state: %s", info.id, exc)
        return recovered

    def replay(self, run_id: str, capacity: int) -> tuple[str | None, list[str]]:
        """(hello, history) of a stored run: its messages downsampled by the same rule as a
        live run's History, so a replay shows what a live tab would have held.

        A line is sorted by the type its start names; only the lines kept are parsed whole
        (a long run holds far more frames than a history), and a kept one that does not
        parse is left out, so a damaged line costs at most its own slot."""
        hello = None
        history = History(capacity)
        skipped = _Skipped(run_id)
        try:
            for number, line in self._numbered_lines(run_id, skipped):
                kind = line_type(line)
                if kind is None:
                    skipped.add(number)
                elif kind == "hello":
                    hello = line if storefs.parse_message(line) is not None else hello
                else:
                    history.append(line, kind == "frame")
            held = history.snapshot()
            kept = [line for line in held if storefs.parse_message(line) is not None]
            skipped.count += len(held) - len(kept)
        finally:
            skipped.report()
        return hello, kept

    def lines(self, run_id: str) -> Iterator[str]:
        """frames.jsonl line by line (without newlines), its messages only: a line that is not
        a JSON object with a string "type" (or holds NaN or Infinity, or is not UTF-8, or is
        longer than MAX_LINE_BYTES) is skipped and counted in the log; so is a half-written
        last line, uncounted. A missing or unreadable file (a link) has no lines. Each line
        is a Message, which carries what it parsed to."""
        skipped = _Skipped(run_id)
        try:
            for number, line in self._numbered_lines(run_id, skipped):
                record = storefs.parse_message(line)
                if record is None:
                    skipped.add(number)
                else:
                    yield Message(line, record)
        finally:
            skipped.report()

    def _numbered_lines(self, run_id: str, skipped: _Skipped) -> Iterator[tuple[int, str]]:
        folder = self.folder(run_id)
        try:
            file = os.fdopen(storefs.open_in(folder, "frames.jsonl", os.O_RDONLY), "rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("run %s: frames.jsonl is not read: %s", run_id, exc)
            return
        with file:
            try:
                for number, line in storefs.read_lines(file, MAX_LINE_BYTES):
                    if line is None:
                        skipped.add(number)
                    else:
                        yield number, line
            except OSError as exc:  # e.g. EIO: what was read stands
                log.warning("run %s: reading frames.jsonl failed: %s", run_id, exc)


class _Skipped:
    """The damaged lines met in one read of a run's frames.jsonl, logged once at its end."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.count = 0
        self.first: int | None = None

    def add(self, number: int) -> None:
        self.count += 1
        self.first = number if self.first is None else self.first

    def report(self) -> None:
        if self.count:
            where = f", the first at line {self.first}" if self.first is not None else ""
            log.warning(
                "run %s: skipped %d damaged lines of frames.jsonl%s",
                self.run_id,
                self.count,
                where,
            )


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config as the API shows it: without server-side paths."""
    return {key: value for key, value in config.items() if key != "data_dir"}
