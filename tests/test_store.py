"""Run store, bounded history, client queues and CSV export; the store read back after a restart."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import serverkit
from covshift.reports.export import columns, csv_lines
from covshift.web.app import create_app
from covshift.web.fanout import ClientClosed, ClientQueue
from covshift.web.history import History
from covshift.web.lifecycle import RunInfo, RunState
from covshift.web.store import RunStore, line_type
from covshift.wire import SCHEMA_VERSION
from fastapi.testclient import TestClient
from serverkit import SMALL, receive_until

_deadline = serverkit.per_test_deadline(60)


def frame(number: int) -> str:
    return json.dumps({"v": 1, "type": "frame", "step": number})


def event(number: int) -> str:
    return json.dumps({"v": 1, "type": "event", "step": number, "kind": "lr"})


def kept_frames(history: History) -> list[int]:
    return [json.loads(t)["step"] for t in history.snapshot() if line_type(t) == "frame"]


def expected_frames(n: int, capacity: int) -> list[int]:
    """The rule, computed directly: the smallest power-of-two stride whose multiples below
    n fit in capacity - 1 slots, plus the newest frame."""
    stride = 1
    while -(-n // stride) > capacity - 1:
        stride *= 2
    return sorted(set(range(0, n, stride)) | {n - 1})


# ---- history ----


@pytest.mark.parametrize("capacity", [2, 3, 4, 7, 10, 64])
def test_history_keeps_first_newest_and_evenly_spaced_frames(capacity: int) -> None:
    history = History(capacity)
    for n in range(1, 300):
        history.append(frame(n - 1), is_frame=True)
        kept = kept_frames(history)
        assert kept == expected_frames(n, capacity)
        assert kept[0] == 0 and kept[-1] == n - 1
        assert len(kept) <= capacity


def test_history_is_deterministic_and_ordered_with_events() -> None:
    def fill() -> list[str]:
        history = History(8)
        for n in range(100):
            history.append(frame(n), is_frame=True)
            if n % 30 == 7:
                history.append(event(n), is_frame=False)
        return history.snapshot()

    first, second = fill(), fill()
    assert first == second
    steps = [json.loads(t)["step"] for t in first]
    assert steps == sorted(steps)  # arrival order (events come after the frame of their step)
    assert [json.loads(t)["step"] for t in first if line_type(t) == "event"] == [7, 37, 67, 97]


def test_history_bounds_events_by_dropping_the_oldest() -> None:
    history = History(3)
    for n in range(5):
        history.append(event(n), is_frame=False)
    assert [json.loads(t)["step"] for t in history.snapshot()] == [2, 3, 4]


# ---- client queues ----


def test_a_full_client_queue_drops_its_oldest_frame_and_keeps_events() -> None:
    async def scenario() -> tuple[list[str], int]:
        queue = ClientQueue(3)
        queue.put("event-a", is_frame=False)
        queue.put("frame-1", is_frame=True)
        queue.put("frame-2", is_frame=True)
        queue.put("frame-3", is_frame=True)  # full: frame-1 goes, the event stays
        queue.put("ack", is_frame=False)  # full: frame-2 goes
        received = [await queue.get() for _ in range(len(queue))]
        return received, queue.dropped

    received, dropped = asyncio.run(scenario())
    assert received == ["event-a", "frame-3", "ack"]
    assert dropped == 2


def test_a_queue_of_only_events_drops_the_oldest_and_put_never_blocks() -> None:
    async def scenario() -> list[str]:
        queue = ClientQueue(2)
        for n in range(1000):  # a client that never reads
            queue.put(f"event-{n}", is_frame=False)
        return [await queue.get(), await queue.get()]

    assert asyncio.run(scenario()) == ["event-998", "event-999"]


def test_a_closed_queue_ends_the_reader() -> None:
    async def scenario() -> None:
        queue = ClientQueue(2)
        reader = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.close()
        with pytest.raises(ClientClosed):
            await reader

    asyncio.run(scenario())


# ---- the store on disk ----


def info(run_id: str, state: RunState) -> RunInfo:
    return RunInfo(
        id=run_id,
        state=state,
        created=datetime(2025, 1, 1, tzinfo=timezone.utc),
        config={},
        lr=0.5,
        batch_size=60,
        bn_momentum=0.1,
        error=None,
        clients=0,
    )


def test_store_round_trip_and_recovery_of_a_run_cut_off_while_running(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    log = store.create(info("a" * 22, RunState.FINISHED), {"dataset": "moons", "data_dir": "/x"})
    log.append(['{"v":1,"type":"hello"}', frame(0)])
    log.close()
    store.create(info("b" * 22, RunState.RUNNING), {"dataset": "digits"}).close()
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / ("c" * 22)).mkdir()  # no files: skipped, not fatal

    loaded = {run.id: run for run in store.load()}
    assert set(loaded) == {"a" * 22, "b" * 22}
    assert loaded["a" * 22].state is RunState.FINISHED
    assert loaded["a" * 22].config == {"dataset": "moons"}  # server paths are not shown
    cut = loaded["b" * 22]
    assert cut.state is RunState.STOPPED and "server stopped" in (cut.error or "")
    assert RunStore(tmp_path).load()[1].state is RunState.STOPPED  # saved so


def test_store_lines_skip_a_half_written_last_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.create(info("d" * 22, RunState.RUNNING), {}).close()
    with store.frames_path("d" * 22).open("w") as file:
        file.write(frame(0) + "\n" + frame(1)[:10])
    assert list(store.lines("d" * 22)) == [frame(0)]


def test_replay_from_the_file_equals_the_live_history(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    log = store.create(info("e" * 22, RunState.FINISHED), {})
    live = History(5)
    lines = ['{"v": 1, "type": "hello"}']  # headless spacing: the type is still read
    for n in range(40):
        lines.append(frame(n))
        live.append(frame(n), is_frame=True)
        if n % 9 == 0:
            lines.append(event(n))
            live.append(event(n), is_frame=False)
    log.append(lines)
    log.close()
    hello, replayed = store.replay("e" * 22, 5)
    assert hello == lines[0]
    assert replayed == live.snapshot()


# ---- CSV ----


def test_csv_has_one_row_per_frame_and_variant_with_defined_columns() -> None:
    hello = {"v": 1, "type": "hello", "config": {"depth": 2}, "percentiles": [1, 15, 50, 85, 99]}

    def layer(mean: float) -> dict[str, Any]:
        stats = {"mean": mean, "std": 1.0, "percentiles": [-2.0, -1.0, 0.0, 1.0, 2.0]}
        return {"taps": {"act_input": stats}}

    a_frame = {
        "v": 1,
        "type": "frame",
        "step": 10,
        "epoch": 0.5,
        "lr": 0.1,
        "batch_size": 32,
        "variants": {
            "plain": {
                "status": "training",
                "loss": 0.7,
                "acc": 0.5,
                "layers": [layer(0.25), layer(-0.5)],
                "test": {"loss": 0.6, "acc": 0.55},
            },
            "bn": {"status": "diverged", "loss": None, "acc": None},
        },
    }
    lines = [json.dumps(hello), json.dumps(a_frame), event(11)]
    rows = list(csv.reader(io.StringIO("".join(csv_lines(lines)))))
    assert rows[0] == columns(2)
    assert rows[0][:10] == [
        "step",
        "epoch",
        "lr",
        "batch_size",
        "variant",
        "status",
        "loss",
        "acc",
        "test_loss",
        "test_acc",
    ]
    assert rows[0][10:15] == [
        "layer1_act_input_mean",
        "layer1_act_input_std",
        "layer1_act_input_p15",
        "layer1_act_input_p50",
        "layer1_act_input_p85",
    ]
    assert len(rows) == 3
    plain = dict(zip(rows[0], rows[1], strict=True))
    assert plain["variant"] == "plain" and plain["step"] == "10" and plain["test_acc"] == "0.55"
    assert plain["layer2_act_input_mean"] == "-0.5"
    assert (plain["layer1_act_input_p15"], plain["layer1_act_input_p85"]) == ("-1.0", "1.0")
    bn = dict(zip(rows[0], rows[2], strict=True))
    assert bn["status"] == "diverged" and bn["loss"] == "" and bn["layer1_act_input_mean"] == ""


# ---- a restart ----


@pytest.mark.slow
def test_a_stopped_run_is_listed_exported_and_replayed_after_a_restart(tmp_path: Path) -> None:
    with TestClient(create_app(serverkit.settings(tmp_path))) as client:
        run_id = client.post("/api/runs", json=SMALL).json()["id"]
        with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
            receive_until(ws, lambda m: m["type"] == "frame" and m["step"] >= 20)
        stopped = client.delete(f"/api/runs/{run_id}").json()
        assert stopped["state"] == "stopped"
        before = client.get(f"/api/runs/{run_id}/export?format=jsonl").text

    with TestClient(create_app(serverkit.settings(tmp_path))) as client:
        listed = client.get("/api/runs").json()
        assert [(r["id"], r["state"]) for r in listed] == [(run_id, "stopped")]
        exported = client.get(f"/api/runs/{run_id}/export?format=jsonl")
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        assert exported.text == before
        records = [json.loads(line) for line in exported.text.splitlines()]
        assert records[0]["type"] == "hello"
        assert records[-1] == {
            "v": SCHEMA_VERSION,
            "type": "event",
            "step": stopped["step"],
            "kind": "state",
            "state": "stopped",
        }
        frames = [r for r in records if r["type"] == "frame"]
        assert frames[0]["step"] == 0 and frames[-1]["step"] >= 20

        table = list(
            csv.DictReader(io.StringIO(client.get(f"/api/runs/{run_id}/export?format=csv").text))
        )
        assert len(table) == 2 * len(frames)  # plain and bn
        assert [int(row["step"]) for row in table[::2]] == [f["step"] for f in frames]

        with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
            assert json.loads(ws.receive_text()) == records[0]
            replayed = [json.loads(ws.receive_text()) for _ in records[1:]]
            assert replayed == records[1:]  # under history_frames: the whole run
