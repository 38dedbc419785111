"""Helpers for the fault tests: a real server on a real socket, raw websocket clients, tmpfs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from covshift.settings import Settings
from covshift.web.app import create_app
from covshift.web.manager import RunManager
from websockets.sync.client import ClientConnection, connect


def strict_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN and Infinity, as a browser's JSON.parse does."""

    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in a message")

    return json.loads(text, parse_constant=refuse)


class ThreadedServer:
    """The app under uvicorn in a thread of this process, on a real loopback socket, so the
    tests can reach the run manager while clients talk to it over TCP."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                break
            if not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            self.thread.join(0.05)
        listener = self.server.servers[0]
        self.port: int = listener.sockets[0].getsockname()[1]
        self.loop = listener.get_loop()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def manager(self) -> RunManager:
        found: RunManager = self.server.lifespan.state["manager"]
        return found

    def call(self, coroutine: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a coroutine on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine(), self.loop).result(10)

    def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.http.get(f"/api/runs/{run_id}").json()
        return found

    def create(self, config: dict[str, Any]) -> str:
        created = self.http.post("/api/runs", json=config)
        assert created.status_code == 201, created.text
        run_id: str = created.json()["id"]
        return run_id

    def ws(self, run_id: str) -> ClientConnection:
        return connect(f"ws://127.0.0.1:{self.port}/ws/runs/{run_id}", max_size=None)


def receive_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], limit: int = 20000
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages (refusing bare NaN) until one matches; it and everything before it."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        message = strict_json(ws.recv(timeout=30))
        if match(message):
            return message, seen
        seen.append(message)
    raise AssertionError(f"no matching message in {limit}: last {seen[-3:]}")


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
