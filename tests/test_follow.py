"""Watched runs: a folder another process writes is picked up, streamed live and ended."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
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


def test_a_watched_run_that_opted_in_takes_the_learning_rate_from_the_page(
    client: TestClient, logdir: Path
) -> None:
    import covshift
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stop = threading.Event()
    watcher = covshift.watch(model, every=5, logdir=logdir, optimizer=optimizer, live_lr=True)

    def loop() -> None:  # the user's own training loop, in its own thread
        while not stop.is_set():
            x = torch.randn(16, 4)
            loss = F.cross_entropy(model(x), (x[:, 0] > 0).long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            watcher.step(loss=loss)
            time.sleep(0.005)

    trainer = threading.Thread(target=loop)
    trainer.start()
    try:
        run = wait_for(lambda: listed(client, watcher.path.name), timeout=10)
        assert run["config"]["controls"] == ["lr"]
        changed = client.patch(f"/api/runs/{watcher.path.name}", json={"lr": 0.02})
        assert changed.status_code == 200, changed.text
        assert optimizer.param_groups[0]["lr"] == 0.02  # applied before the answer came
        # Only what the program opted in to: batch size stays its own.
        refused = client.patch(f"/api/runs/{watcher.path.name}", json={"batch_size": 8})
        assert refused.status_code == 409
    finally:
        stop.set()
        trainer.join()
        watcher.close()
    records = [
        json.loads(line) for line in (watcher.path / "frames.jsonl").read_text().splitlines()
    ]
    changes = [r for r in records if r.get("kind") == "lr"]
    assert [(c["previous"], c["value"], c["control"]) for c in changes] == [(0.1, 0.02, 1)]


def test_a_change_not_taken_by_its_deadline_is_never_applied(tmp_path: Path) -> None:
    import covshift
    import torch
    from covshift.web.store import RunStore
    from torch import nn

    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with covshift.watch(model, every=2, logdir=tmp_path, optimizer=optimizer, live_lr=True) as w:
        model(torch.randn(8, 4)).sum().backward()
        w.step()
        late = datetime.now(timezone.utc) - timedelta(seconds=1)
        RunStore(tmp_path).write_control(
            w.path.name, {"seq": 1, "lr": 5.0, "deadline": late.isoformat()}
        )
        time.sleep(1.2)  # the writer has read it by now
        for _ in range(3):
            model(torch.randn(8, 4)).sum().backward()
            w.step()
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert '"kind":"lr"' not in (w.path / "frames.jsonl").read_text()
