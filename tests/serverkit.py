"""Helpers shared by the server tests: small fast settings, waiting, reading websockets."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from covshift.settings import Settings
from starlette.testclient import WebSocketTestSession

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


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, every: float = 0.02) -> Any:
    """Poll until predicate() is truthy; return its value."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def receive_until(
    ws: WebSocketTestSession, match: Callable[[dict[str, Any]], bool], limit: int = 5000
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages until one matches; return it and everything read before it."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        message = json.loads(ws.receive_text())
        if match(message):
            return message, seen
        seen.append(message)
    raise AssertionError(f"no matching message in {limit}: last {seen[-3:]}")


def is_type(type_: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """Matches messages of this type whose fields have these values."""
    return lambda m: m.get("type") == type_ and all(m.get(k) == v for k, v in fields.items())
