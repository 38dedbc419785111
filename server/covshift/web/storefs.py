"""The run store's way to the disk: files opened inside a folder without following a link,
reads bounded in size, and the lock that makes one server the owner of a log directory."""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# Never through a symbolic link. O_NOFOLLOW checks only the last component, so a file is
# opened below its folder's descriptor, and the folder is opened with O_NOFOLLOW too.
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class Damaged(Exception):
    """A file cannot be used as it is; the message names the file and says why."""


class Held(Exception):
    """Another process holds the lock; `pid` is its process id when it wrote one."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


def open_folder(folder: Path) -> int:
    """A descriptor of folder; OSError (ELOOP) when folder is a symbolic link."""
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)


def open_in(folder: Path, name: str, flags: int, mode: int = 0o644) -> int:
    """folder/name opened with flags, following a link at neither step, and only when it is
    a regular file (a FIFO would block its reader for ever); OSError otherwise."""
    folder_fd = open_folder(folder)
    try:
        # O_NONBLOCK: opening a FIFO returns at once, so that the check below refuses it.
        fd = os.open(name, flags | NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=folder_fd)
    finally:
        os.close(folder_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", name)
    os.set_blocking(fd, True)
    return fd


def read_object(folder: Path, name: str, limit: int) -> dict[str, Any]:
    """The JSON object in folder/name, at most `limit` bytes of strict JSON (no NaN, no
    Infinity, no number that overflows a float); Damaged says what is wrong with it."""
    try:
        with os.fdopen(open_in(folder, name, os.O_RDONLY), "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise Damaged(f"{name}: missing") from None
    except OSError as exc:
        raise Damaged(f"{name}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise Damaged(f"{name}: larger than {limit} bytes")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse, parse_float=_finite)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise Damaged(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Damaged(f"{name}: must be a JSON object, not {kind(value)}")
    return value


def kind(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    return names.get(type(value), "an array" if isinstance(value, list) else "an object")


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of a float's range")
    return value


def parse_message(line: str) -> dict[str, Any] | None:
    """The message on one line of frames.jsonl: a JSON object with a string "type" and no NaN
    or Infinity (a browser's JSON.parse refuses them); None for anything else."""
    try:
        record = json.loads(line, parse_constant=_refuse)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return None
    if isinstance(record, dict) and isinstance(record.get("type"), str):
        return record
    return None


def read_lines(file: IO[bytes], limit: int) -> Iterator[tuple[int, str | None]]:
    """(number, text without its newline) of every complete line; None for the text of a line
    that is not UTF-8 or is longer than `limit` bytes (read past, never held whole). A last
    line without its newline is being written (or was cut off by a crash): left out."""
    number = 0
    while data := file.readline(limit + 1):
        number += 1
        if data.endswith(b"\n"):
            try:
                yield number, data[:-1].decode("utf-8")
            except UnicodeDecodeError:
                yield number, None
        elif len(data) <= limit:
            return
        else:
            while data and not data.endswith(b"\n"):
                data = file.readline(limit + 1)
            if data:
                yield number, None


class DirectoryLock:
    """An exclusive flock, held while this is open. The kernel drops it when the process ends
    in any way, SIGKILL included; its descriptor is not inherited by worker processes."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock(folder: Path, name: str) -> DirectoryLock:
    """Lock folder/name for this process and write its pid there; Held when another process
    holds it, OSError when the file cannot be made or locked (a link there, no locks)."""
    fd = open_in(folder, name, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).strip()
        os.close(fd)
        raise Held(int(text) if text.isdigit() else None) from None
    except OSError:
        os.close(fd)
        raise
    # Who owns it, for the message the next server prints.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DirectoryLock(fd)
