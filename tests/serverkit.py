"""The one support module of the server tests: small fast settings, a free port, waiting,
reading websockets, and the app under uvicorn in a thread of the test process.

(tests/liveserver.py starts the real `covshift serve` command in a subprocess instead: for
what only a separate process shows, such as signals, a second server, or the CLI's flags.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from covshift.settings import Settings
from covshift.web.app import create_app
from covshift.web.manager import RunManager
from starlette.testclient import WebSocketTestSession
from websockets.sync.client import ClientConnection, connect

# Small enough that a worker is ready ~2 s after spawning and trains ~1000 steps/s.
SMALL: dict[str, Any] = {
    "dataset": "spirals",  # no scikit-learn import: the worker is ready ~1 s sooner
    "depth": 2,
    "width": 16,
    "probe_every": 10,
    "test_every": 50,
    "bins": 16,
    "steps": 10_000_000,
}


def settings(logdir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "logdir": logdir,
        "demo_run": False,
        "open_browser": False,
        "allowed_hosts": ["testserver"],
        # A worker loaded ahead for every test server would load PyTorch each time (~2 s of
        # a core): test_ready_worker.py turns it on.
        "ready_worker": False,
        **overrides,
    }
    return Settings(**values)


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail a test that hangs (e.g. waiting on a websocket message that never comes)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"test took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def per_test_deadline(seconds: int) -> Any:
    """An autouse fixture giving each test of a module `seconds` before it fails:
    `_deadline = serverkit.per_test_deadline(60)` at module level."""

    @pytest.fixture(autouse=True)
    def _deadline() -> Iterator[None]:
        with deadline(seconds):
            yield

    return _deadline


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, every: float = 0.02) -> Any:
    """Poll until predicate() is truthy and return its value; fail after `timeout` seconds.
    A connection error counts as not yet (a server starting or restarting)."""
    end = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, httpx.TransportError):
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def idle(pid: int | None, seconds: float = 0.5) -> bool:
    """The process used no CPU over the next `seconds`: a worker that has loaded and waits."""

    def cpu_ticks() -> int:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = cpu_ticks()
    time.sleep(seconds)
    return cpu_ticks() == before


def strict_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN and Infinity, as a browser's JSON.parse does."""

    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in a message")

    return json.loads(text, parse_constant=refuse)


def receive_until(
    ws: WebSocketTestSession | ClientConnection,
    match: Callable[[dict[str, Any]], bool],
    limit: int = 20000,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages (refusing bare NaN) from a TestClient or a real websocket until one
    matches; return it and everything read before it."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        text = ws.receive_text() if isinstance(ws, WebSocketTestSession) else ws.recv(timeout=30)
        message = strict_json(text)
        if match(message):
            return message, seen
        seen.append(message)
    raise AssertionError(f"no matching message in {limit}: last {seen[-3:]}")


def is_type(type_: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """Matches messages of this type whose fields have these values."""
    return lambda m: m.get("type") == type_ and all(m.get(k) == v for k, v in fields.items())


class ThreadedServer:
    """The app under uvicorn in a thread of this process, on a real loopback socket, so tests
    reach the run manager while clients talk to it over TCP. stop() and start() keep the port
    and the log directory, like a person restarting `covshift serve`; `ready` (if given) is
    waited for at every start, e.g. the demo run's first frame."""

    def __init__(
        self, settings: Settings, ready: Callable[[ThreadedServer], Any] | None = None
    ) -> None:
        self.settings = settings
        self.ready = ready
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> ThreadedServer:
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        server = self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=server.run, name="live-server", daemon=True)
        self.thread.start()
        thread = self.thread
        wait_for(lambda: server.started or not thread.is_alive(), timeout)
        if not server.started:
            raise RuntimeError("the server did not start")
        self.loop = server.servers[0].get_loop()
        if self.ready is not None:
            wait_for(lambda: self.ready(self), timeout)  # type: ignore[misc]
        return self

    def stop(self) -> None:
        if self.server is None or self.thread is None:
            return
        self.server.should_exit = True
        self.thread.join(30)
        self.server = None
        self.thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.http.close()

    @property
    def manager(self) -> RunManager:
        assert self.server is not None
        found: RunManager = self.server.lifespan.state["manager"]
        return found

    def call(self, coroutine: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a coroutine on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine(), self.loop).result(10)

    def get(self, path: str) -> Any:
        answer = self.http.get(path)
        answer.raise_for_status()
        return answer.json()

    def get_text(self, path: str) -> str:
        answer = self.http.get(path)
        answer.raise_for_status()
        return answer.text

    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.get("/api/runs")
        return runs

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
