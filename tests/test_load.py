"""Load: 50 websocket viewers on one run while --max-runs runs train, through a real server.

Asserts flow, not rates: on a loaded 2-core machine frames may be dropped for slow
clients (by design), but every viewer must keep getting newer frames in every window,
nothing may fail, and the server must still answer HTTP and refuse one run too many.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import serverkit
import websockets
from covshift.wire import SCHEMA_VERSION
from liveserver import LiveServer, serve
from serverkit import SMALL

pytestmark = pytest.mark.slow

MAX_RUNS = 3
VIEWERS = 50  # on the first run; each other run gets one
SECONDS = 60.0
WINDOW = 10.0
CATCH_UP_LIMIT = 90.0  # connecting and replaying the history, on a busy machine
CONTROL_EVERY = 5.0
# SMALL at a frame every 20 steps: dozens of frames a second per run, each fanned out
# to 50 clients, without leaving the trainers nothing to train with.
RUN: dict[str, Any] = {**SMALL, "probe_every": 20}
FRAME_PREFIX = f'{{"v":{SCHEMA_VERSION},"type":"frame","step":'


@dataclass
class Viewer:
    """One websocket client: when each frame arrived and which step it was."""

    run_id: str
    frames: list[tuple[float, int]] = field(default_factory=list)
    connected_at_step: int = -1
    live: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)
    acks: int = 0

    def receive(self, text: str) -> None:
        if text.startswith(FRAME_PREFIX):
            # the step is the first field: no need to parse the whole frame
            step = int(text[len(FRAME_PREFIX) : text.index(",", len(FRAME_PREFIX))])
            self.frames.append((time.monotonic(), step))
            if step > self.connected_at_step:
                self.live.set()
            return
        message = json.loads(text)
        if message["type"] == "ack":
            self.acks += 1
        elif message["type"] == "error" or message.get("state") in ("failed", "stopped"):
            self.errors.append(text[:300])


@dataclass
class Load:
    viewers: list[Viewer]
    started: float
    http_errors: list[str]
    stats: list[dict[str, Any]]
    controls_sent: int
    refused: httpx.Response
    runs_after: list[dict[str, Any]]
    runs_before: list[dict[str, Any]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    scratch = tmp_path_factory.mktemp("load")
    with serve(scratch, "--no-demo", "--max-runs", str(MAX_RUNS)) as server:
        yield server


@pytest.fixture(scope="module")
def load(server: LiveServer) -> Load:
    with serverkit.deadline(int(SECONDS + CATCH_UP_LIMIT + 120)):
        load = asyncio.run(_drive(server))
    frames = [
        sum(load.started <= at < load.started + SECONDS for at, _ in viewer.frames)
        for viewer in load.viewers
    ]
    # The figures behind the assertions, for `pytest -s`.
    print(
        f"\nload: {len(load.viewers)} viewers, {MAX_RUNS} runs, {SECONDS:g} s: frames per "
        f"viewer {min(frames)}..{max(frames)}; largest client queue "
        f"{max(max(stats['queued']) for stats in load.stats)}, dropped "
        f"{max(stats['dropped'] for stats in load.stats)}; controls acked "
        f"{load.viewers[0].acks}/{load.controls_sent}"
    )
    return load


async def _drive(server: LiveServer) -> Load:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        run_ids = []
        for _ in range(MAX_RUNS):
            created = await http.post("/api/runs", json=RUN)
            assert created.status_code == 201, created.text
            run_ids.append(created.json()["id"])
        for run_id in run_ids:
            while (await http.get(f"/api/runs/{run_id}")).json()["state"] != "running":
                await asyncio.sleep(0.2)
        viewers = [Viewer(run_ids[0]) for _ in range(VIEWERS)]
        viewers += [Viewer(run_id) for run_id in run_ids[1:]]
        for viewer in viewers:
            viewer.connected_at_step = (await http.get(f"/api/runs/{viewer.run_id}")).json()["step"]
        controls = asyncio.Queue[str]()
        tasks = [asyncio.create_task(_view(server, viewers[0], controls))]
        tasks += [asyncio.create_task(_view(server, viewer, None)) for viewer in viewers[1:]]
        live = asyncio.gather(*(viewer.live.wait() for viewer in viewers))
        try:
            await asyncio.wait_for(live, CATCH_UP_LIMIT)
        except asyncio.TimeoutError:
            errors = [error for viewer in viewers for error in viewer.errors]
            raise AssertionError(f"viewers not live within {CATCH_UP_LIMIT} s: {errors}") from None
        started = time.monotonic()
        runs_before = (await http.get("/api/runs")).json()
        http_errors: list[str] = []
        stats: list[dict[str, Any]] = []
        sent = 0
        while (now := time.monotonic()) < started + SECONDS:
            if now >= started + sent * CONTROL_EVERY:
                sent += 1
                controls.put_nowait(json.dumps({"type": "control", "id": sent, "lr": 0.1}))
            for path in ("/healthz", "/api/stats"):
                answer = await http.get(path)
                if answer.status_code != 200:
                    http_errors.append(f"{path}: {answer.status_code} {answer.text[:200]}")
                elif path == "/api/stats":
                    stats.append(answer.json())
            await asyncio.sleep(1.0)
        refused = await http.post("/api/runs", json=RUN)
        runs_after = (await http.get("/api/runs")).json()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Load(viewers, started, http_errors, stats, sent, refused, runs_after, runs_before)


async def _view(server: LiveServer, viewer: Viewer, controls: asyncio.Queue[str] | None) -> None:
    url = f"{server.ws_base}/ws/runs/{viewer.run_id}"
    try:
        # No client pings: on a starved machine they would measure the machine, not us.
        async with websockets.connect(
            url, max_size=None, compression=None, open_timeout=60, ping_interval=None
        ) as ws:
            sender = asyncio.create_task(_send_controls(ws, controls)) if controls else None
            try:
                async for text in ws:
                    viewer.receive(str(text))
            finally:
                if sender is not None:
                    sender.cancel()
        viewer.errors.append("the server closed the connection")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure counts, and is shown
        viewer.errors.append(repr(exc))


async def _send_controls(ws: Any, controls: asyncio.Queue[str]) -> None:
    while True:
        await ws.send(await controls.get())


def test_no_errors_under_load(server: LiveServer, load: Load) -> None:
    assert [e for viewer in load.viewers for e in viewer.errors] == []
    assert load.http_errors == []
    assert load.viewers[0].acks == load.controls_sent  # controls answered under load
    assert {run["state"] for run in load.runs_after if run["demo"] is False} == {"running"}
    output = server.output()
    assert "Traceback" not in output and "ERROR" not in output, output[-3000:]


def test_every_viewer_gets_newer_frames_in_every_window(load: Load) -> None:
    windows = int(SECONDS // WINDOW)
    for index, viewer in enumerate(load.viewers):
        latest = viewer.connected_at_step
        for window in range(windows):
            begin = load.started + window * WINDOW
            steps = [step for at, step in viewer.frames if begin <= at < begin + WINDOW]
            assert steps, f"viewer {index} got no frame in window {window}"
            assert max(steps) > latest, f"viewer {index} got no newer frame in window {window}"
            latest = max(steps)


def test_every_run_kept_training(load: Load) -> None:
    before = {run["id"]: run["step"] for run in load.runs_before}
    after = {run["id"]: run["step"] for run in load.runs_after}
    assert len(after) == MAX_RUNS
    assert all(after[run_id] > before[run_id] for run_id in after)


def test_queues_stay_bounded_and_every_client_is_counted(load: Load) -> None:
    assert load.stats
    for stats in load.stats:
        assert stats["clients"] == len(load.viewers)
        assert stats["active_runs"] == MAX_RUNS
        assert max(stats["queued"]) <= stats["queue_limit"]


def test_one_run_more_is_refused_naming_the_limit(load: Load) -> None:
    assert load.refused.status_code == 429
    detail = load.refused.json()["detail"]
    assert f"the limit is {MAX_RUNS}" in detail and "max_runs" in detail
