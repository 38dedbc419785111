"""Reading a run's records: its hello and the records after it, from frames.jsonl or lines.

Two sources, one shape: a run folder on disk (`covshift run --out`, the server's log dir,
a watched run, live or finished) and the message lines the server holds for a run (its
store's lines, or the history of a run kept only in memory). Both give (hello, records),
the records read as iterated so memory stays bounded on a long run.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from covshift.errors import CovshiftError
from covshift.wire import Json

from .run import DamagedRun, NoDataYet


class RunUnreadable(CovshiftError):
    """A run's frames.jsonl is missing or damaged: there is nothing to read."""


def read_run(run_dir: Path) -> tuple[dict[str, Json], Iterator[dict[str, Json]]]:
    """The hello of RUN_DIR/frames.jsonl (or of that file itself) and an iterator over the
    records after it. A last line without its newline is a record still being written (a
    live run) and is left out; any other line that is not a JSON object is damage, raised as
    RunUnreadable when it is reached."""
    path = run_dir if run_dir.is_file() else run_dir / "frames.jsonl"
    try:
        file = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise RunUnreadable(
            f"{path}: no such file (a run folder holds the frames.jsonl that "
            "`covshift run --out` or the server's log dir writes)"
        ) from None
    except OSError as exc:
        raise RunUnreadable(f"{path}: cannot be read: {exc}") from None
    records = _records(path, file)
    first = next(records, None)
    if first is None:
        raise RunUnreadable(f"{path}: empty, no hello record (the run has not started)")
    number, hello = first
    if not is_hello(hello):
        records.close()  # closes the file now, not when the generator is collected
        raise RunUnreadable(f"{path}, line {number}: the first record is not a hello")
    return hello, (record for _, record in records)


def _records(path: Path, file: TextIO) -> Generator[tuple[int, dict[str, Json]], None, None]:
    number = 0
    try:
        with file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    if not line.endswith("\n"):
                        return  # still being written
                    raise RunUnreadable(f"{path}, line {number}: damaged, not JSON") from None
                if not isinstance(record, dict):
                    raise RunUnreadable(f"{path}, line {number}: damaged, not a JSON object")
                yield number, record
    except (OSError, UnicodeDecodeError) as exc:
        raise RunUnreadable(f"{path}, near line {number + 1}: cannot be read: {exc}") from None


def run_records(
    run_id: str, lines: Iterable[str]
) -> tuple[dict[str, Json], Iterator[dict[str, Json]]]:
    """The hello and the records after it from a run's message lines (hello first, as
    frames.jsonl holds them; the server's store has already left out damaged lines). Lines
    before the first hello are left out, as the HTML report does. NoDataYet when no hello has
    arrived, DamagedRun when it is not one a reader can use: both answer 409."""
    records = (_parsed(line) for line in lines)
    for record in records:
        if record.get("type") != "hello":
            continue
        if not is_hello(record):
            raise DamagedRun(f"run {run_id}: its hello is damaged; no diagnosis")
        return record, records
    raise NoDataYet(f"run {run_id} has no data yet (its worker is still loading)")


def _parsed(line: str) -> dict[str, Json]:
    # The run store's lines (store.Message) carry what they parsed to: not parsed twice.
    record = getattr(line, "record", None)
    if record is None:
        record = json.loads(line)
    return record if isinstance(record, dict) else {}


def is_hello(record: dict[str, Json]) -> bool:
    """A hello record a reader can use: its "variants" is an object naming each variant."""
    return record.get("type") == "hello" and isinstance(record.get("variants"), dict)
