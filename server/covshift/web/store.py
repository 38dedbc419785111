"""The run store: one folder per run under the log directory, plain files, no server.

    <logdir>/<run id>/config.json    the run config as validated
    <logdir>/<run id>/frames.jsonl   the hello line, then every frame and event as it arrived
    <logdir>/<run id>/state.json     RunInfo without config: state, error, step, times

frames.jsonl has the same format as `covshift run` writes (docs/protocol.md), so a
stored run and a headless run are read the same way. It is appended from the run's
reader thread and flushed after every batch from the worker, so a server crash loses
at most what the worker had not yet handed over. state.json is replaced atomically.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from covshift.wire import encode, state_event

from .history import History
from .lifecycle import RunInfo, RunState

log = logging.getLogger(__name__)

# secrets.token_urlsafe output; anything else in the log directory is not ours.
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Every message starts {"v": N, "type": "..."} (frames.message): read the type without
# parsing a 50 KB frame.
_TYPE = re.compile(r'\{\s*"v"\s*:\s*\d+\s*,\s*"type"\s*:\s*"(\w+)"')
# How far back from its end a cut-off run's frames.jsonl is read to recover its last frame
# (a frame of the default config is ~30 KB).
TAIL_BYTES = 1 << 20
TERMINAL = {state.value for state in RunState if state.terminal}


def message_type(line: str) -> str:
    """The "type" of one JSON message line."""
    found = _TYPE.match(line)
    if found:
        return found.group(1)
    return str(json.loads(line).get("type"))


class StoreError(Exception):
    """The log directory cannot be used; the message says why."""


class FramesLog:
    """Appends message lines to one run's frames.jsonl. Used by one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")

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

    def folder(self, run_id: str) -> Path:
        if not RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id

    def frames_path(self, run_id: str) -> Path:
        return self.folder(run_id) / "frames.jsonl"

    def create(self, info: RunInfo, config: dict[str, Any]) -> FramesLog:
        folder = self.folder(info.id)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", "utf-8")
        self.save(info)
        return FramesLog(folder / "frames.jsonl")

    def save(self, info: RunInfo) -> None:
        """Replace state.json atomically (a crash leaves the old or the new one, never half)."""
        folder = self.folder(info.id)
        text = info.model_dump_json(exclude={"config", "clients"}, indent=2) + "\n"
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".state-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, folder / "state.json")
        except OSError:
            Path(temporary).unlink(missing_ok=True)  # e.g. disk full: leave no stray file
            raise

    def load(self) -> list[RunInfo]:
        """Every stored run, oldest first. A run still marked active was cut off by a crash
        or a kill of the server: it is recovered (see `_recover`) and saved so."""
        runs: list[RunInfo] = []
        if not self.root.is_dir():
            return runs
        for folder in sorted(self.root.iterdir()):
            if not (folder.is_dir() and RUN_ID.match(folder.name)):
                continue
            try:
                config = json.loads((folder / "config.json").read_text("utf-8"))
                state = json.loads((folder / "state.json").read_text("utf-8"))
                info = RunInfo.model_validate({**state, "config": config, "id": folder.name})
            except (OSError, ValueError, ValidationError) as exc:
                log.warning("skipping %s: not a readable run (%s)", folder, exc)
                continue
            if info.state.active:
                info = self._recover(info)
            runs.append(info.model_copy(update={"config": public_config(config)}))
        runs.sort(key=lambda info: info.created)
        return runs

    def _recover(self, info: RunInfo) -> RunInfo:
        """A run cut off while active: its state as its frames.jsonl last recorded it.

        Its last frame gives step, epoch, lr and batch size (state.json is only saved when
        the state changes). If the file ends with the run's own end (the crash came between
        writing it and saving state.json), that end stands; otherwise the run is marked
        stopped, with a note, and a "stopped" state event is appended (after cutting off a
        half-written last line), so the file ends as every other ended run's does."""
        path = self.frames_path(info.id)
        lines, complete = _tail(path)
        records = _records(lines)
        update: dict[str, Any] = {"ended": datetime.now(timezone.utc)}
        update.update(_progress(records, info.step))
        end = records[-1] if records else {}
        if end.get("kind") == "state" and end.get("state") in TERMINAL:
            update.update(state=RunState(end["state"]), error=end.get("message"))
        else:
            update.update(
                state=RunState.STOPPED,
                error=f"the server stopped while the run was {info.state.value}; "
                "it was not resumed",
            )
        recovered = info.model_copy(update=update)
        try:
            if recovered.state is RunState.STOPPED and complete is not None:
                with path.open("r+", encoding="utf-8") as file:
                    file.truncate(complete)
                    file.seek(complete)
                    file.write(encode(state_event(recovered.step, "stopped")) + "\n")
        except OSError as exc:
            log.warning("run %s: could not end %s: %s", info.id, path, exc)
        try:
            self.save(recovered)
        except OSError as exc:
            log.warning("run %s: could not save its recovered state: %s", info.id, exc)
        return recovered

    def replay(self, run_id: str, capacity: int) -> tuple[str | None, list[str]]:
        """(hello, history) of a stored run: its messages downsampled by the same rule as a
        live run's History, so a replay shows what a live tab would have held."""
        hello = None
        history = History(capacity)
        for line in self.lines(run_id):
            kind = message_type(line)
            if kind == "hello":
                hello = line
            else:
                history.append(line, kind == "frame")
        return hello, history.snapshot()

    def lines(self, run_id: str) -> Iterator[str]:
        """frames.jsonl line by line (without newlines); a half-written last line is skipped."""
        path = self.frames_path(run_id)
        if not path.exists():
            return
        with path.open(encoding="utf-8") as file:
            for line in file:
                if line.endswith("\n"):
                    yield line[:-1]


def _tail(path: Path) -> tuple[list[str], int | None]:
    """The complete lines at the end of a frames.jsonl (about TAIL_BYTES of them, at least
    the last one) and the length in bytes of its complete part (a half-written last line
    left out); None for the length when the file is missing or cannot be read."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            start, data = size, b""
            while start > 0:
                start = max(0, start - TAIL_BYTES)
                file.seek(start)
                data = file.read(size - start)
                if data.count(b"\n") >= 2:
                    break
    except OSError as exc:
        if path.exists():
            log.warning("could not read %s: %s", path, exc)
        return [], None
    complete = data.rfind(b"\n") + 1
    lines = data[:complete].decode("utf-8", errors="replace").splitlines()
    if start > 0:
        lines = lines[1:]  # the first is cut at its start
    return lines, start + complete


def _records(lines: list[str]) -> list[dict[str, Any]]:
    """The frames and events among these lines; a line that does not parse is skipped."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("type") in ("frame", "event"):
            records.append(record)
    return records


def _progress(records: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """Step, epoch, lr and batch size after the last of these frames, when past `step`."""
    frames = [record for record in records if record["type"] == "frame"]
    try:
        last = frames[-1]
        # The worker sends a frame after its update: step + 1 updates were taken.
        taken = int(last["step"]) + 1
        if taken <= step:
            return {}
        return {
            "step": taken,
            "epoch": float(last["epoch"]),
            "lr": float(last["lr"]),
            "batch_size": int(last["batch_size"]),
        }
    except (IndexError, KeyError, TypeError, ValueError):
        return {}


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config as the API shows it: without server-side paths."""
    return {key: value for key, value in config.items() if key != "data_dir"}
