"""Websocket /ws/runs/{id}: hello, history, live frames; controls, errors, many clients, origins."""

from __future__ import annotations

import gzip
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import serverkit
from covshift.config import RunConfig
from covshift.web.app import create_app
from covshift.web.manager import RunManager
from covshift.wire import SCHEMA_VERSION
from fastapi.testclient import TestClient
from serverkit import SMALL, is_type, receive_until, wait_for
from starlette.websockets import WebSocketDisconnect

pytestmark = pytest.mark.slow  # the module's client trains real runs in worker processes


_deadline = serverkit.per_test_deadline(60)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = serverkit.settings(
        tmp_path_factory.mktemp("logs"),
        allowed_origins=["http://allowed.example"],
        demo_run=True,
        demo=RunConfig.model_validate(SMALL),
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def run_id(client: TestClient) -> str:
    """The demo run, started with the app and shared by the module's tests; every test
    leaves its lr at 0.5."""
    (demo,) = [run for run in client.get("/api/runs").json() if run["demo"]]
    run_id: str = demo["id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["step"] > 20)
    return run_id


def test_the_demo_run_lives_in_memory_and_still_exports(client: TestClient, run_id: str) -> None:
    run = client.get(f"/api/runs/{run_id}").json()
    assert (run["demo"], run["stored"], run["state"]) == (True, False, "running")
    manager: RunManager = client.app_state["manager"]
    assert not manager.store.folder(run_id).exists()  # nothing written to disk
    lines = client.get(f"/api/runs/{run_id}/export").text.splitlines()
    assert [json.loads(line)["type"] for line in lines[:3]] == ["hello", "event", "frame"]


def frames_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "frame"]


def test_an_unknown_run_gets_an_error_and_close_code_4404(client: TestClient) -> None:
    with client.websocket_connect(f"/ws/runs/{'x' * 22}") as ws:
        error = json.loads(ws.receive_text())
        assert error["type"] == "error" and "x" * 22 in error["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 4404


def test_hello_then_history_then_live_frames(client: TestClient, run_id: str) -> None:
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
        hello = json.loads(ws.receive_text())
        assert (hello["v"], hello["type"]) == (SCHEMA_VERSION, "hello")
        assert hello["config"]["dataset"] == "spirals" and hello["variant_edges"]
        step_now = client.get(f"/api/runs/{run_id}").json()["step"]
        live, before = receive_until(ws, lambda m: m.get("step", 0) > step_now + 20)
        frames = frames_of([*before, live])
        steps = [f["step"] for f in frames]
        assert steps[0] == 0  # the history starts at the first frame
        assert steps == sorted(set(steps))  # in order, none twice
        assert steps[-1] > step_now + 20  # and live frames follow
        assert before[0] == {
            "v": SCHEMA_VERSION,
            "type": "event",
            "step": 0,
            "kind": "state",
            "state": "running",
        }


def test_a_control_is_acked_and_the_new_lr_shows_in_the_frames(
    client: TestClient, run_id: str
) -> None:
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
        ws.send_text(json.dumps({"type": "control", "id": "c1", "lr": 0.05}))
        ack, before = receive_until(ws, is_type("ack"))
        assert ack["v"] == SCHEMA_VERSION and ack["id"] == "c1"
        assert (ack["run"]["id"], ack["run"]["lr"]) == (run_id, 0.05)
        event = [m for m in before if m.get("kind") == "lr"][-1]
        assert (event["value"], event["previous"]) == (0.05, 0.5)
        _, after = receive_until(ws, lambda m: m.get("step", 0) > event["step"] + 15)
        assert frames_of(after) and {f["lr"] for f in frames_of(after)} == {0.05}
        assert all(f["step"] >= event["step"] for f in frames_of(after))

        ws.send_text(json.dumps({"type": "control", "id": 2, "lr": 0.5}))
        assert receive_until(ws, is_type("ack"))[0]["run"]["lr"] == 0.5


@pytest.mark.parametrize(
    ("send", "client_id", "starts"),
    [
        ("{not json", None, "malformed JSON"),
        ("[1, 2]", None, "a message must be a JSON object"),
        ('{"type": "subscribe", "id": 3}', 3, "type: unknown message type 'subscribe'"),
        (
            '{"type": "control", "id": 4, "lr": 11}',
            4,
            "lr: Input should be less than or equal to 10",
        ),
        ('{"type": "control", "id": 5, "lr": 0}', 5, "lr: Input should be greater than 0"),
        ('{"type": "control", "id": 6, "batch_size": 0}', 6, "batch_size:"),
        ('{"type": "control", "id": 7, "bn_momentum": 1.5}', 7, "bn_momentum:"),
        ('{"type": "control", "id": 8, "colour": 1}', 8, "colour: Extra inputs"),
        ('{"type": "control", "id": 9, "batch_size": 2000}', 9, "batch_size: 2000 is more than"),
        ('{"type": "control", "id": 10, "step": true}', 10, "step: single steps are for a paused"),
    ],
)
def test_bad_messages_get_an_error_and_the_connection_stays_open(
    client: TestClient, run_id: str, send: str, client_id: object, starts: str
) -> None:
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
        ws.send_text(send)
        error, _ = receive_until(ws, is_type("error"))
        assert error["v"] == SCHEMA_VERSION and error["id"] == client_id
        assert error["message"].startswith(starts), error["message"]
        ws.send_text(json.dumps({"type": "control", "id": "ok"}))  # still open and served
        assert receive_until(ws, is_type("ack"))[0]["id"] == "ok"


def test_binary_messages_get_an_error(client: TestClient, run_id: str) -> None:
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
        ws.send_bytes(b"\x00\x01")
        error, _ = receive_until(ws, is_type("error"))
        assert "binary" in error["message"]
        ws.send_text(json.dumps({"type": "control", "id": 1}))
        receive_until(ws, is_type("ack"))


def test_a_change_from_one_client_reaches_every_client(client: TestClient, run_id: str) -> None:
    with (
        client.websocket_connect(f"/ws/runs/{run_id}") as first,
        client.websocket_connect(f"/ws/runs/{run_id}") as second,
    ):
        assert client.get(f"/api/runs/{run_id}").json()["clients"] == 2
        first.send_text(json.dumps({"type": "control", "id": 1, "lr": 0.07}))
        for ws in (first, second):
            event, _ = receive_until(ws, is_type("event", kind="lr", value=0.07))
            frame, _ = receive_until(
                ws, lambda m, at=event["step"]: m["type"] == "frame" and m["step"] >= at
            )
            assert frame["lr"] == 0.07
        client.patch(f"/api/runs/{run_id}", json={"lr": 0.5})  # HTTP changes reach them too
        for ws in (first, second):
            receive_until(ws, is_type("event", kind="lr", value=0.5))


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://evil.example", False),
        ("http://testserver.evil.example", False),
        ("null", False),
        ("http://testserver", True),  # same origin as the Host header
        ("http://allowed.example", True),  # in allowed_origins
        (None, True),  # not a browser
    ],
)
def test_cross_origin_handshakes_are_refused(
    client: TestClient, run_id: str, origin: str | None, allowed: bool
) -> None:
    headers = {"origin": origin} if origin else {}
    if allowed:
        with client.websocket_connect(f"/ws/runs/{run_id}", headers=headers) as ws:
            assert json.loads(ws.receive_text())["type"] == "hello"
        return
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(f"/ws/runs/{run_id}", headers=headers),
    ):
        pass
    assert refused.value.code == 1008


def receive_history(ws: Any) -> dict[str, Any]:
    """The next binary message: a gzip-compressed history."""
    history: dict[str, Any] = json.loads(gzip.decompress(ws.receive_bytes()))
    assert (history["v"], history["type"]) == (SCHEMA_VERSION, "history")
    return history


def test_a_page_view_gets_one_compressed_history_then_projected_frames(
    client: TestClient, run_id: str
) -> None:
    view = f"/ws/runs/{run_id}?tap=norm_xhat&channel=3"
    with (
        client.websocket_connect(view) as ws,
        client.websocket_connect(f"/ws/runs/{run_id}") as whole_ws,
    ):
        hello = json.loads(ws.receive_text())
        assert hello["type"] == "hello"
        history = receive_history(ws)
        steps = [m["step"] for m in frames_of(history["messages"])]
        assert steps[0] == 0 and steps == sorted(set(steps))
        assert history["messages"][0]["kind"] == "state"  # events in their place
        # A frame both get live: the same as a client without a view gets, less what the
        # view does not show (SMALL probes every 10th step).
        target = steps[-1] + 40
        seen, _ = receive_until(ws, lambda m: m.get("step") == target)
        whole_ws.receive_text()
        whole, _ = receive_until(whole_ws, lambda m: m.get("step") == target)
        for variant, entry in whole["variants"].items():
            for index, layer in enumerate(entry["layers"]):
                shown = seen["variants"][variant]["layers"][index]
                for tap, stats in layer["taps"].items():
                    got = shown["taps"][tap]
                    if tap == "norm_xhat" or isinstance(stats, str):
                        assert got == stats
                    else:
                        assert "counts" not in got and "first" not in got
                        assert got == {
                            k: v for k, v in stats.items() if k not in ("counts", "first")
                        }
                if variant == "bn":
                    assert shown["bn"]["channels"] == [3]
                    for field, values in layer["bn"].items():
                        assert shown["bn"][field] == values[3:4]
                else:
                    assert shown["bn"] is None
        assert len(json.dumps(seen)) < 0.7 * len(json.dumps(whole))


def test_a_view_message_sends_the_history_again_for_the_new_view(
    client: TestClient, run_id: str
) -> None:
    with client.websocket_connect(f"/ws/runs/{run_id}?tap=act_input&channel=0") as ws:
        ws.receive_text()
        first = receive_history(ws)
        ws.send_text(json.dumps({"type": "view", "tap": "act_output", "channel": 99}))
        while True:  # live frames of the old view may come before the new history
            try:
                again = receive_history(ws)
                break
            except KeyError:
                continue
        assert len(frames_of(again["messages"])) >= len(frames_of(first["messages"]))
        frame = frames_of(again["messages"])[-1]
        layer = frame["variants"]["bn"]["layers"][0]
        assert "counts" in layer["taps"]["act_output"]
        assert "counts" not in layer["taps"]["linear_out"]
        assert layer["bn"]["channels"] == [99] and layer["bn"]["running_mean"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("tap=act_input", "channel"), ("tap=a%20b&channel=0", "tap"), ("channel=-1&tap=x", "channel")],
)
def test_a_bad_view_is_refused_naming_the_field(
    client: TestClient, run_id: str, query: str, field: str
) -> None:
    with client.websocket_connect(f"/ws/runs/{run_id}?{query}") as ws:
        error = json.loads(ws.receive_text())
        assert error["type"] == "error" and error["message"].startswith(f"{field}:")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1008


def test_a_bad_view_message_is_answered_and_the_connection_stays(
    client: TestClient, run_id: str
) -> None:
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
        ws.receive_text()
        ws.send_text(json.dumps({"type": "view", "id": 5, "tap": "act_input", "channel": True}))
        error, _ = receive_until(ws, is_type("error", id=5))
        assert error["message"].startswith("channel:")
        receive_until(ws, is_type("frame"))  # still streaming


@pytest.fixture(scope="module")
def second_run(client: TestClient) -> str:
    """A second run (the demo is the first) for the lifecycle tests below; it ends killed."""
    run_id: str = client.post("/api/runs", json=SMALL).json()["id"]
    return run_id


def test_pause_step_and_resume(client: TestClient, second_run: str) -> None:
    with client.websocket_connect(f"/ws/runs/{second_run}") as ws:  # before it is ready
        assert json.loads(ws.receive_text())["type"] == "hello"
        receive_until(ws, is_type("frame"))
        ws.send_text(json.dumps({"type": "control", "id": 1, "paused": True}))
        ack, before = receive_until(ws, is_type("ack", id=1))
        assert ack["run"]["state"] == "paused"
        assert is_type("event", kind="state", state="paused")(before[-1])
        held = ack["run"]["step"]

        ws.send_text(json.dumps({"type": "control", "id": 2, "step": True}))
        ack, _ = receive_until(ws, is_type("ack", id=2))
        assert (ack["run"]["state"], ack["run"]["step"]) == ("paused", held + 1)

        ws.send_text(json.dumps({"type": "control", "id": 3, "paused": False}))
        ack, _ = receive_until(ws, is_type("ack", id=3))
        assert ack["run"]["state"] == "running"
        receive_until(ws, lambda m: m["type"] == "frame" and m["step"] > held + 10)


def test_a_killed_worker_is_reported_to_its_clients(
    client: TestClient, run_id: str, second_run: str
) -> None:
    manager: RunManager = client.app_state["manager"]
    with client.websocket_connect(f"/ws/runs/{second_run}") as ws:
        receive_until(ws, is_type("frame"))
        pid = manager.get(second_run).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        failed, _ = receive_until(ws, is_type("event", kind="state", state="failed"))
        assert "SIGKILL" in failed["message"]
        ws.send_text(json.dumps({"type": "control", "id": 4, "lr": 0.1}))
        error, _ = receive_until(ws, is_type("error", id=4))
        assert "failed" in error["message"]  # the connection stays, the run takes no changes
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:  # the other run streams on
        step = client.get(f"/api/runs/{run_id}").json()["step"]
        receive_until(ws, lambda m: m["type"] == "frame" and m["step"] > step)


def test_a_stop_reaches_the_clients(client: TestClient, run_id: str) -> None:
    # Last in the module: it ends the shared demo run.
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
        stopped = client.delete(f"/api/runs/{run_id}").json()
        assert stopped["state"] == "stopped"
        receive_until(ws, is_type("event", kind="state", state="stopped"))
        ws.send_text(json.dumps({"type": "control", "id": 5, "lr": 0.1}))
        error, _ = receive_until(ws, is_type("error", id=5))
        assert "stopped" in error["message"]
