"""Websocket control messages, fuzzed: every bad message is answered with an error naming
what is wrong, the connection stays usable, and the run it controls is not corrupted.

Against a real `covshift serve` (uvicorn's websocket stack, its size limit) and one run
shared by the module. Each generated message is followed by a valid probe that must be
acknowledged; replies come in order, so the first reply after a message is its own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import serverkit
from covshift.settings import Settings
from covshift.web.security import ws_transport_limit
from covshift.wire import SCHEMA_VERSION
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from liveserver import LiveServer, serve
from serverkit import SMALL
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.slow  # a real server process and a worker training throughout

MAX_BODY: int = Settings.model_fields["max_body_bytes"].default
# Few frames: the client reads every one (to check it), and the checks want replies.
RUN = {**SMALL, "probe_every": 100, "test_every": 500}
FUZZ = settings(
    max_examples=1000,  # ~5 ms each: a control waits for one training step
    derandomize=True,  # the same messages every run: a failure reproduces
    database=None,
    deadline=None,
    # `ws` is one connection per test, shared by its examples on purpose.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
REPLY_TIMEOUT_S = 30.0  # a control waits for the worker's next step; generous for CI


_deadline = serverkit.per_test_deadline(240)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("fuzz-ws"), "--no-demo", "--max-runs", "1") as server:
        yield server


@pytest.fixture(scope="module")
def run_id(server: LiveServer) -> str:
    created = httpx.post(f"{server.base}/api/runs", json=RUN, timeout=30)
    assert created.status_code == 201, created.text
    run_id: str = created.json()["id"]
    serverkit.wait_for(lambda: run_info(server, run_id)["state"] == "running", timeout=60)
    return run_id


def run_info(server: LiveServer, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{server.base}/api/runs/{run_id}", timeout=30).json()
    return found


def no_bare_nonfinite(token: str) -> float:
    raise AssertionError(f"the server sent a bare {token}: not JSON")


class Socket:
    """A websocket client that checks every message it reads: JSON with finite numbers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames = 0
        self.n_train = 0
        self.paused = False

    def read(self) -> dict[str, Any]:
        text = self.ws.recv(timeout=REPLY_TIMEOUT_S)
        assert isinstance(text, str), "the server sent a binary message"
        message: dict[str, Any] = json.loads(text, parse_constant=no_bare_nonfinite)
        assert message["v"] == SCHEMA_VERSION
        if message["type"] == "frame":
            self.frames += 1
        elif message["type"] == "hello":
            self.n_train = message["dataset"]["n_train"]
        return message

    def send(self, message: str | bytes) -> None:
        self.ws.send(message)

    def reply(self) -> dict[str, Any]:
        """The next ack or error (frames and events in between are read and checked)."""
        while True:
            message = self.read()
            if message["type"] in ("ack", "error"):
                return message

    def probe(self, tag: str = "probe") -> None:
        """A valid control must be acknowledged: the connection is still served."""
        self.send(json.dumps({"type": "control", "id": tag}))
        ack = self.reply()
        assert (ack["type"], ack["id"]) == ("ack", tag), ack
        check_run(ack["run"])
        self.paused = ack["run"]["state"] == "paused"


def check_run(run: dict[str, Any]) -> None:
    """A run's live values are ones the bounds allow (RunConfig's, written out here)."""
    assert run["state"] in ("running", "paused"), run
    assert isinstance(run["lr"], float) and 0 < run["lr"] <= 10
    assert isinstance(run["batch_size"], int) and 1 <= run["batch_size"] <= 4096
    momentum = run["bn_momentum"]
    assert momentum is None or (isinstance(momentum, float) and 0 < momentum <= 1)


@pytest.fixture
def ws(server: LiveServer, run_id: str) -> Iterator[Socket]:
    with connect(f"{server.ws_base}/ws/runs/{run_id}", max_size=None) as connection:
        socket = Socket(connection)
        assert socket.read()["type"] == "hello"
        socket.probe()
        yield socket


# ---- the oracle: what the protocol allows, written out independently of the server ----


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: object) -> bool:
    """JSON Schema's "integer": 2 and 2.0, not 2.5, not true."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def field_problem(field: str, value: Any) -> bool:
    """True when this value of a control message's field is outside the protocol (the bounds
    are RunConfig's; the trainer's own refusals come after, see expected_reply)."""
    if field == "lr":
        return value is not None and not (is_number(value) and 0 < value <= 10)
    if field == "batch_size":
        fits = is_integer(value) and 1 <= value <= 4096
        return value is not None and not fits
    if field == "bn_momentum":
        return value is not None and not (is_number(value) and 0 < value <= 1)
    if field == "paused":
        return value is not None and not isinstance(value, bool)
    if field == "step":
        return not isinstance(value, bool)
    if field == "id":
        return value is not None and not (isinstance(value, str) or is_integer(value))
    return True  # not a field of a control message


def named(field: str, error: str) -> bool:
    """Does the error message name this field (pydantic's `id.int: ...` counts)?"""
    name = field or '""'  # a key named "" is shown quoted
    return re.search(rf"(^|; ){re.escape(name)}[.:]", error) is not None


# ---- strategies ----

NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])  # sent as NaN, Infinity, -Infinity
NUMBER_TEXT = st.sampled_from(["NaN", "Infinity", "-Infinity", "nan", "inf", "1e999", "0.5", "8"])
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | NUMBER_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
HUGE = st.integers(min_value=2**63, max_value=10**300) | st.integers(max_value=-(2**63))
VALID: dict[str, st.SearchStrategy[Any]] = {
    "lr": st.floats(min_value=1e-3, max_value=10) | st.just(10),
    "batch_size": st.integers(1, 200) | st.none(),
    "bn_momentum": st.none() | st.floats(min_value=1e-3, max_value=1),
    "paused": st.booleans() | st.none(),
    "step": st.just(False),  # true is valid only while paused: EDGE has it
    "id": st.integers(-(10**6), 10**6) | st.text(max_size=8) | st.none(),
}
EDGE: dict[str, st.SearchStrategy[Any]] = {
    "lr": st.floats(-1, 12) | st.sampled_from([0, -0.0, 5e-324, 10.000000000000002]),
    "batch_size": st.integers(-5, 5000) | st.floats(1, 100) | st.sampled_from([0, 4096, 4097]),
    "bn_momentum": st.floats(-1, 2) | st.sampled_from([0, 1, 1.0000000000000002]),
    "paused": st.integers(0, 1) | st.sampled_from(["true", "yes", "on"]),
    "step": st.booleans() | st.none(),
    "id": st.floats() | st.booleans(),
}
FIELDS = sorted(VALID)


@st.composite
def control_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A control message: each field valid, out of bounds, non-finite, huge, mistyped or
    missing; sometimes with unknown fields, or a type that is wrong or absent."""
    message: dict[str, Any] = {}
    kind = draw(st.sampled_from(["control"] * 8 + ["other type", "no type"]))
    if kind == "control":
        message["type"] = "control"
    elif kind == "other type":
        message["type"] = draw((st.text(max_size=12) | JUNK).filter(lambda t: t != "control"))
    for field in draw(st.permutations(FIELDS))[: draw(st.integers(0, 4))]:
        # Mostly valid values, so that a good share of the messages pass.
        mostly_valid = st.sampled_from([VALID[field]] * 3 + [EDGE[field], NONFINITE, HUGE, JUNK])
        message[field] = draw(draw(mostly_valid))
    if draw(st.integers(0, 7)) == 0:
        unknown = st.text(max_size=6).filter(lambda key: key not in FIELDS and key != "type")
        message[draw(unknown)] = draw(JUNK)
    return message


def expected_reply(message: dict[str, Any], paused: bool, n_train: int) -> tuple[str, set[str]]:
    """("ack", {}) or ("error", the fields the error must name)."""
    if message.get("type") != "control":
        return "error", {"type"}
    bad = {
        field for field, value in message.items() if field != "type" and field_problem(field, value)
    }
    if bad:
        return "error", bad
    # Valid messages reach the trainer, which refuses a batch larger than the data
    if (message.get("batch_size") or 0) > n_train:
        return "error", {"batch_size"}
    now_paused = message.get("paused", paused)
    now_paused = paused if now_paused is None else now_paused
    if message.get("step") and not now_paused:
        return "error", {"step"}
    return "ack", set()


def echoed_id(message: dict[str, Any]) -> object:
    client_id = message.get("id")
    if isinstance(client_id, str) or is_integer(client_id):
        return client_id  # 2.0 == 2: the server echoes it as 2
    return None


# ---- the tests ----


@FUZZ
@given(message=control_messages())
def test_every_control_message_is_answered_and_the_run_stays_sound(
    ws: Socket, message: dict[str, Any]
) -> None:
    # allow_nan (the default) writes NaN and Infinity: tokens Python's json reads back.
    ws.send(json.dumps(message))
    reply = ws.reply()
    kind, fields = expected_reply(message, ws.paused, ws.n_train)
    event(f"{kind} naming {sorted(f if f in VALID or f == 'type' else '?' for f in fields)}")
    assert reply["type"] == kind, (message, reply)
    assert reply["id"] == echoed_id(message), (message, reply)
    if kind == "error":
        missing = {field for field in fields if not named(field, reply["message"])}
        assert not missing, (message, reply)
    else:
        check_run(reply["run"])
        for field in ("lr", "batch_size"):
            if message.get(field) is not None:
                assert reply["run"][field] == message[field]
        if "bn_momentum" in message:
            assert reply["run"]["bn_momentum"] == message["bn_momentum"]
    ws.probe()


# Text that is not a JSON object: broken JSON, other JSON values, nesting deep enough
# to exhaust a recursive parser (within the size limit).
NOT_OBJECTS = (
    st.text(max_size=40)
    | JUNK.filter(lambda value: not isinstance(value, dict)).map(json.dumps)
    | st.integers(1, MAX_BODY // 2 - 1).map(lambda depth: "[" * depth + "]" * depth)
    | st.integers(1, MAX_BODY // 8).map(lambda depth: '{"a":' * depth + "1" + "}" * depth)
)


@settings(FUZZ, max_examples=300)
@given(text=NOT_OBJECTS)
def test_text_that_is_not_a_json_object_gets_an_error(ws: Socket, text: str) -> None:
    ws.send(text)
    reply = ws.reply()
    assert (reply["type"], reply["id"]) == ("error", None), (text[:80], reply)
    try:
        value = json.loads(text)
        expected = {"type:" if isinstance(value, dict) else "a message must be a JSON object"}
    except (ValueError, RecursionError):
        expected = {"malformed JSON"}
    if text.count("[") + text.count("{") > 500:
        # Near the parser's recursion limit, which depends on the stack it starts from.
        expected.add("malformed JSON")
    assert reply["message"].startswith(tuple(expected)), (text[:80], reply)
    ws.probe()


@settings(FUZZ, max_examples=100)
@given(data=st.binary(max_size=64) | st.sampled_from([b'{"type": "control", "id": 1}']))
def test_binary_messages_get_an_error(ws: Socket, data: bytes) -> None:
    ws.send(data)
    reply = ws.reply()
    assert (reply["type"], reply["id"]) == ("error", None)
    assert "binary" in reply["message"]
    ws.probe()


@pytest.mark.parametrize(
    "message",
    [
        "é" * (MAX_BODY // 2 + 1),  # fewer characters than the limit, more bytes
        json.dumps({"type": "control", "id": 1, "pad": " " * MAX_BODY}),
        b"\x00" * (MAX_BODY + 1),
    ],
    ids=["text-in-utf8-bytes", "control", "binary"],
)
def test_a_message_over_the_limit_gets_an_error_then_close_1009(
    server: LiveServer, run_id: str, message: str | bytes
) -> None:
    with connect(f"{server.ws_base}/ws/runs/{run_id}", max_size=None) as connection:
        ws = Socket(connection)
        ws.probe()
        connection.send(message)
        error = ws.reply()
        assert error["type"] == "error" and f"limit of {MAX_BODY} bytes" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.reply()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_message_at_the_limit_is_read(ws: Socket) -> None:
    head = json.dumps({"type": "control", "id": "full"})
    ws.send(head[:-1] + " " * (MAX_BODY - len(head)) + "}")
    assert ws.reply()["id"] == "full"


def test_a_message_past_the_transport_limit_is_cut_off_unread(
    server: LiveServer, run_id: str
) -> None:
    with connect(f"{server.ws_base}/ws/runs/{run_id}", max_size=None) as connection:
        ws = Socket(connection)
        with pytest.raises(ConnectionClosed) as closed:
            connection.send(" " * (ws_transport_limit(MAX_BODY) + 1))
            while True:
                ws.read()
    # uvicorn sends 1009, but it may reset the socket while the client is still sending.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009


def test_after_the_fuzzing_the_run_still_trains_and_streams(
    server: LiveServer, run_id: str, ws: Socket
) -> None:
    ws.send(json.dumps({"type": "control", "id": "go", "paused": False, "lr": 0.1}))
    ack = ws.reply()
    assert ack["type"] == "ack" and ack["run"]["state"] == "running"
    before = ack["run"]["step"]
    frames = ws.frames
    while ws.frames < frames + 3:
        message = ws.read()
        if message["type"] == "frame":
            assert message["step"] >= before and message["lr"] == 0.1
    info = run_info(server, run_id)
    check_run(info)
    assert info["step"] > before and info["error"] is None
