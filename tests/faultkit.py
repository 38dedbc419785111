"""Helpers for the fault tests: raw websocket clients and sockets, tmpfs, filling a disk.
(The server in a thread, waiting and reading messages are serverkit's.)"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def raw_websocket(port: int, path: str, receive_buffer: int | None = None) -> socket.socket:
    """A websocket opened by hand on a plain TCP socket, so a test can stop reading it or
    reset it mid-message, as a crashed or frozen browser tab would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)  # byte by byte: leave the first frame's bytes in the socket
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as when a client's process dies."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def mount_tmpfs(path: Path, size: str, *options: str) -> str | None:
    """Mount a small filesystem of its own at path, so a full or read-only disk is a real
    one; None when mounted, else why not (it needs root and mount(8))."""
    path.mkdir(parents=True, exist_ok=True)
    options = (f"size={size}", *options)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        return str(exc)
    return None if mounted.returncode == 0 else mounted.stderr.strip() or "mount failed"


def unmount(path: Path) -> None:
    subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    """mount_tmpfs for the length of a with block; the test skips where it cannot mount."""
    why_not = mount_tmpfs(path, size, *options)
    if why_not is not None:
        pytest.skip(f"cannot mount a tmpfs here: {why_not}")
    try:
        yield path
    finally:
        unmount(path)


def fill(folder: Path) -> Path:
    """Fill the filesystem of folder to the last byte; the filler file, to delete."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as file:
        chunk = b"\0" * (1 << 16)
        with contextlib.suppress(OSError):
            while True:
                file.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                file.write(b"\0")
    return filler
