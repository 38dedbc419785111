"""Helpers for the browser tests: a live uvicorn server in a thread, restartable on its port."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from covshift.config import RunConfig
from covshift.settings import Settings
from covshift.web.app import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright's own browser download does not work here; Debian's Chromium does with these.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# A demo run small enough that its worker is ready in ~2 s and streams ~50 frames/s.
DEMO = RunConfig(
    dataset="moons", depth=2, width=16, steps=10_000_000, probe_every=10, test_every=50, bins=32
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """covshift's app under uvicorn in a background thread; stop() and start() keep the port
    and the log directory, like a person restarting `covshift serve`."""

    def __init__(self, logdir: Path, port: int | None = None) -> None:
        self.logdir = logdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> None:
        settings = Settings(
            host="127.0.0.1",
            port=self.port,
            logdir=self.logdir,
            demo_run=True,
            demo=DEMO,
            open_browser=False,
        )
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="covshift-live", daemon=True)
        self._thread.start()
        wait_for(lambda: self._server is not None and self._server.started, timeout)
        # The demo run is ready once its worker has sent its first frame.
        wait_for(lambda: any(run["step"] > 0 for run in self.runs()), timeout)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._server = None
        self._thread = None

    def get(self, path: str) -> Any:
        return json.loads(self.get_text(path))

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            text: str = response.read().decode()
            return text

    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.get("/api/runs")
        return runs

    def run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.get(f"/api/runs/{run_id}")
        return run


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll until predicate() is truthy and return its value; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OSError:
            value = None  # the server is (re)starting
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
