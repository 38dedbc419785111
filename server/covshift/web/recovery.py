"""A run folder read back at start: its RunInfo from state.json and config.json, the listing
of a damaged run, and the state of a run cut off by a crash from the end of frames.jsonl.
Reads only (through storefs, never following a link); store.py does the writing."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from covshift.config import describe

from . import storefs
from .lifecycle import RunInfo, RunState

log = logging.getLogger(__name__)

# A folder holding any of these is a run; one holding none of them is not ours.
RUN_FILES = ("config.json", "state.json", "frames.jsonl")
# state.json and config.json are a few KB: a larger one is damage, not read into memory.
MAX_JSON_BYTES = 1 << 20
# The states a run's own last event may record (a worker never records "damaged").
ENDS = {RunState.FINISHED.value, RunState.STOPPED.value, RunState.FAILED.value}
# The page holds numbers as doubles: a step or batch size past this is not a real one.
MAX_EXACT = 2**53
# What a damaged run's listing keeps from its state.json, each field where it validates.
# A watched run (config.json "source": "watch") is written by its own process, which
# refreshes state.json's "heartbeat" every 2 s while it lives: this long without one is a
# process that ended without closing the run (killed, or its interpreter died).
HEARTBEAT_STALE_S = 30.0
ABANDONED = "the watching process ended without closing the run"
SALVAGED = ("created", "ended", "step", "epoch", "lr", "batch_size", "bn_momentum", "demo")


@dataclass
class Found:
    """What a run folder holds: state.json and config.json as far as they read, the first
    damage found, and the folder's time (standing in for a damaged run's creation time)."""

    created: datetime
    state: dict[str, Any]
    config: dict[str, Any]
    damage: str | None = None


def read_folder(folder: Path) -> Found | None:
    """A run folder's state and config, read without following a link; None when it is not a
    run folder (not a directory, or holding none of RUN_FILES)."""
    try:
        meta = folder.lstat()
    except OSError:
        return None
    found = Found(datetime.fromtimestamp(meta.st_mtime, timezone.utc), {}, {})
    if stat.S_ISLNK(meta.st_mode):
        found.damage = "the run folder is a symbolic link; it is not followed"
        return found
    if not stat.S_ISDIR(meta.st_mode):
        return None
    try:
        modes = {name: os.lstat(folder / name).st_mode for name in _present(folder)}
    except OSError as exc:
        found.damage = f"the run folder cannot be read ({exc.strerror or exc})"
        return found
    if not modes:
        log.info("skipping %s: none of a run's files in it", folder)
        return None
    damage = [
        f"{name} is a symbolic link; it is not followed"
        if stat.S_ISLNK(mode)
        else f"{name} is not a regular file"
        for name, mode in modes.items()
        if not stat.S_ISREG(mode)
    ]
    if not damage:
        try:
            found.config = storefs.read_object(folder, "config.json", MAX_JSON_BYTES)
        except storefs.Damaged as exc:
            damage.append(str(exc))
        try:
            found.state = storefs.read_object(folder, "state.json", MAX_JSON_BYTES)
        except storefs.Damaged as exc:
            damage.append(str(exc))
    found.damage = damage[0] if damage else None
    return found


def _present(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if entry.name in RUN_FILES)


def run_info(run_id: str, found: Found) -> RunInfo:
    """The run as its files describe it, or, when they cannot (found.damage is then set),
    its listing as a damaged run."""
    if found.damage is None:
        try:
            info = RunInfo.model_validate({**found.state, "config": found.config, "id": run_id})
        except ValidationError as exc:
            found.damage = f"state.json: {describe(exc)}"
        else:
            if info.state is not RunState.DAMAGED:
                return info
            # Found so at a start, never saved: a file that says so was not written by a server.
            found.damage = "state.json: state: damaged is never saved"
    return damaged(run_id, found)


def damaged(run_id: str, found: Found) -> RunInfo:
    """A damaged run as listed: its id, the reason, and what of its state.json and
    config.json still reads (lr and batch size 0 when unknown)."""
    info = RunInfo(
        id=run_id,
        state=RunState.DAMAGED,
        created=found.created,
        config=found.config,
        lr=0.0,
        batch_size=0,
        bn_momentum=None,
        error=found.damage,
    )
    for key in SALVAGED:
        if key in found.state:
            with contextlib.suppress(ValidationError):
                info = RunInfo.model_validate({**info.model_dump(), key: found.state[key]})
    return info


def heartbeat_alive(state: dict[str, Any], now: datetime | None = None) -> bool:
    """A watched run's state.json says its process lived within HEARTBEAT_STALE_S."""
    beat = state.get("heartbeat")
    if not isinstance(beat, str):
        return False
    try:
        when = datetime.fromisoformat(beat)
    except ValueError:
        return False
    if when.tzinfo is None:
        return False
    age = (now or datetime.now(timezone.utc)) - when
    return age.total_seconds() < HEARTBEAT_STALE_S


def tail(folder: Path, tail_bytes: int) -> tuple[list[str], int | None]:
    """The complete lines at the end of a frames.jsonl (about tail_bytes of them, at least
    the last one) and the length in bytes of its complete part (a half-written last line
    left out); None for the length when the file is missing or cannot be read."""
    try:
        with os.fdopen(storefs.open_in(folder, "frames.jsonl", os.O_RDONLY), "rb") as file:
            size = file.seek(0, os.SEEK_END)
            start, data = size, b""
            while start > 0:
                start = max(0, start - tail_bytes)
                file.seek(start)
                data = file.read(size - start)
                if data.count(b"\n") >= 2:
                    break
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            log.warning("could not read %s: %s", folder / "frames.jsonl", exc)
        return [], None
    complete = data.rfind(b"\n") + 1
    lines = data[:complete].decode("utf-8", errors="replace").splitlines()
    if start > 0:
        lines = lines[1:]  # the first is cut at its start
    return lines, start + complete


def recovered(info: RunInfo, lines: list[str], note: str | None = None) -> RunInfo:
    """A run cut off while active, as the last lines of its frames.jsonl leave it.

    Its last frame gives step, epoch, lr and batch size (state.json is only saved when the
    state changes). If the lines end with the run's own end (the crash came between writing
    it and saving state.json), that end stands; otherwise the run is stopped, with `note`
    (by default: the server stopped while the run was active)."""
    records = _records(lines)
    update: dict[str, Any] = {"ended": datetime.now(timezone.utc)}
    update.update(_progress(records, info.step))
    end = recorded_end(lines)
    if end is not None:
        note = end.get("message")
        update.update(state=RunState(end["state"]), error=note if isinstance(note, str) else None)
    else:
        update.update(
            state=RunState.STOPPED,
            error=note
            or f"the server stopped while the run was {info.state.value}; it was not resumed",
        )
    # Validated, unlike model_copy: what the file held must make a RunInfo the API can send.
    return RunInfo.model_validate({**info.model_dump(), **update})


def recorded_end(lines: list[str]) -> dict[str, Any] | None:
    """The run's own end (a state event that ends it) when the lines finish with one."""
    records = _records(lines)
    end = records[-1] if records else {}
    return end if end.get("kind") == "state" and end.get("state") in ENDS else None


def _records(lines: list[str]) -> list[dict[str, Any]]:
    """The frames and events among these lines; a line that does not parse is skipped."""
    records = []
    for line in lines:
        record = storefs.parse_message(line)
        if record is not None and record["type"] in ("frame", "event"):
            records.append(record)
    return records


def _progress(records: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """Step, epoch, lr and batch size after the last of these frames, when past `step` and
    every one of them is a number in its range or null (a damaged frame changes nothing)."""
    frames = [record for record in records if record["type"] == "frame"]
    if not frames:
        return {}
    last = frames[-1]
    # The worker sends a frame after its update: step + 1 updates were taken.
    taken = _number(last.get("step"), int, 0, MAX_EXACT)
    if taken is None or taken + 1 <= step:
        return {}
    ranges = {
        "epoch": (float, 0, math.inf),
        "lr": (float, 0, math.inf),
        "batch_size": (int, 1, MAX_EXACT),
    }
    progress: dict[str, Any] = {"step": int(taken) + 1}
    for key, (kind, low, high) in ranges.items():
        raw = last.get(key)
        if raw is None:  # a watched run's frames carry no epoch, and lr only when told it
            continue
        value = _number(raw, kind, low, high)
        if value is None or (key == "lr" and value == 0):
            return {}  # a damaged frame changes nothing
        progress[key] = value
    return progress


def _number(value: object, kind: type, low: float, high: float) -> float | int | None:
    """value when it is a JSON number of this kind (an int for int) in [low, high), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind is int and not isinstance(value, int):
        return None
    try:
        number = float(value)  # OverflowError for an int past a float's range
    except OverflowError:
        return None
    if not (math.isfinite(number) and low <= number < high):
        return None
    return value if kind is int else number
