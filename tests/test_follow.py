"""Watched runs: a folder another process writes is picked up, streamed live and ended."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import serverkit
from covshift.web import recovery
from covshift.web.app import create_app
from covshift.wire import encode, message, state_event
from fastapi.testclient import TestClient
from serverkit import wait_for

_deadline = serverkit.per_test_deadline(60)


class FakeWatcher:
    """Writes a run folder the way covshift.watch does: config, state with heartbeat, lines."""

    def __init__(self, logdir: Path, beat: datetime | None = None) -> None:
        self.id = secrets.token_urlsafe(16)
        self.folder = logdir / self.id
        self.folder.mkdir()
        (self.folder / "config.json").write_text(
            json.dumps({"source": "watch", "name": "mine", "variants": ["bn"], "every": 10})
        )
        self.created = datetime.now(timezone.utc)
        self.beat(beat)
        self.frames = (self.folder / "frames.jsonl").open("a", encoding="utf-8")

    def beat(self, when: datetime | None = None, state: str = "running") -> None:
        when = when or datetime.now(timezone.utc)
        record = {
            "id": self.id,
            "state": state,
            "created": self.created.isoformat(),
            "step": 0,
            "lr": None,
            "batch_size": None,
            "bn_momentum": None,
            "source": "watch",
            "pid": os.getpid(),
            "heartbeat": when.isoformat(),
        }
        temporary = self.folder / ".state.tmp"
        temporary.write_text(json.dumps(record))
        os.replace(temporary, self.folder / "state.json")

    def write(self, *records: dict[str, Any], partial: str = "") -> None:
        self.frames.write("".join(encode(record) + "\n" for record in records) + partial)
        self.frames.flush()


def frame(step: int) -> dict[str, Any]:
    return message("frame", step=step, epoch=None, lr=0.1, batch_size=32, variants={})


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def client(logdir: Path) -> Iterator[TestClient]:
    logdir.mkdir()
    settings = serverkit.settings(logdir, demo_run=False)
    with TestClient(create_app(settings)) as client:
        yield client


def listed(client: TestClient, run_id: str) -> dict[str, Any] | None:
    return next((run for run in client.get("/api/runs").json() if run["id"] == run_id), None)


def test_a_watched_run_appears_streams_refuses_controls_and_ends(
    client: TestClient, logdir: Path
) -> None:
    watcher = FakeWatcher(logdir)
    watcher.write(message("hello", config={"source": "watch"}), frame(0))
    run = wait_for(lambda: listed(client, watcher.id), timeout=5)
    assert run["source"] == "watch" and run["state"] == "running"
    with client.websocket_connect(f"/ws/runs/{watcher.id}") as ws:
        assert ws.receive_json()["type"] == "hello"
        assert ws.receive_json()["step"] == 0
        # A line still being written is not sent until its newline arrives.
        watcher.write(frame(10), partial=encode(frame(20))[:25])
        assert ws.receive_json()["step"] == 10
        watcher.write(partial=encode(frame(20))[25:] + "\n")
        assert ws.receive_json()["step"] == 20
        refused = client.patch(f"/api/runs/{watcher.id}", json={"lr": 0.2})
        assert refused.status_code == 409 and "own process" in refused.json()["detail"]
        assert client.delete(f"/api/runs/{watcher.id}").status_code == 409
        watcher.write(state_event(21, "finished"))
        watcher.beat(state="finished")
        end = ws.receive_json()
        assert end["kind"] == "state" and end["state"] == "finished"
    ended = wait_for(lambda: (r := listed(client, watcher.id)) and r["state"] == "finished" and r)
    assert ended["step"] == 21
    # Ended: replayed from the file, the server wrote nothing into the watcher's folder.
    lines = (watcher.folder / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[-1])["state"] == "finished"


def test_a_watcher_that_dies_is_stopped_and_its_file_ended(
    client: TestClient, logdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "HEARTBEAT_STALE_S", 1.5)
    watcher = FakeWatcher(logdir)
    watcher.write(message("hello", config={"source": "watch"}), frame(0), partial='{"v": 1, "ty')
    wait_for(lambda: listed(client, watcher.id), timeout=5)
    # No more heartbeats: the process is gone.
    run = wait_for(
        lambda: (r := listed(client, watcher.id)) and r["state"] == "stopped" and r, timeout=10
    )
    assert run["error"] == recovery.ABANDONED
    lines = (watcher.folder / "frames.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {**state_event(1, "stopped"), "message": recovery.ABANDONED}
    assert len(lines) == 3  # the half-written line was cut, the stop appended once


def test_at_start_a_live_watched_run_is_followed_and_a_dead_one_recovered(
    logdir: Path,
) -> None:
    logdir.mkdir()
    alive = FakeWatcher(logdir)
    alive.write(message("hello", config={}), frame(0))
    dead = FakeWatcher(logdir, beat=datetime.now(timezone.utc) - timedelta(minutes=5))
    dead.write(message("hello", config={}), frame(0))
    with TestClient(create_app(serverkit.settings(logdir, demo_run=False))) as client:
        assert listed(client, alive.id)["state"] == "running"  # type: ignore[index]
        gone = listed(client, dead.id)
        assert gone is not None and gone["state"] == "stopped"
        assert gone["error"] == recovery.ABANDONED
    # The live one was not touched: its file ends with its own last frame.
    assert json.loads((alive.folder / "frames.jsonl").read_text().splitlines()[-1])["step"] == 0


def test_the_heartbeat_rule() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    fresh = {"heartbeat": (now - timedelta(seconds=5)).isoformat()}
    stale = {"heartbeat": (now - timedelta(seconds=recovery.HEARTBEAT_STALE_S)).isoformat()}
    assert recovery.heartbeat_alive(fresh, now)
    assert not recovery.heartbeat_alive(stale, now)
    assert not recovery.heartbeat_alive({"heartbeat": "2026-01-01T00:00:00"}, now)  # no zone
    assert not recovery.heartbeat_alive({"heartbeat": 5}, now)
    assert not recovery.heartbeat_alive({}, now)
