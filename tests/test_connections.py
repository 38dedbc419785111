"""Connection limits against a real `covshift serve`, over raw sockets: header size and count,
the request and keep-alive timeouts, the connection cap; websockets unaffected by them."""

from __future__ import annotations

import contextlib
import json
import re
import resource
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import serverkit
from covshift.settings import Settings
from covshift.web.connections import FILES_KEPT_BACK, LINGERING_REFUSALS, fit_open_files
from liveserver import LiveServer, serve
from pydantic import ValidationError
from serverkit import SMALL
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.slow  # a real server process

# Small enough that each limit is reached within a test's few seconds.
LIMITS = {
    "max_header_bytes": 16384,  # over websockets' own line limit (8192), to reach it too
    "max_headers": 32,
    "request_timeout": 2,
    "keep_alive_timeout": 1,
    "max_connections": 16,
}
CONNECTION_SETTINGS = tuple(LIMITS)
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: any 16 bytes will do

_deadline = serverkit.per_test_deadline(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in LIMITS.items()]
    with serve(tmp_path_factory.mktemp("edge"), "--no-demo", "--max-runs", "1", *flags) as server:
        yield server


def opened(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def request_head(server: LiveServer, *headers: str, target: str = "/healthz") -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One response (status, body), read by its Content-Length: the socket may stay open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a whole response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in head.lower().split(b"\r\n")[1:])
    while len(body) < int(fields.get(b"content-length", b"0")):
        body += sock.recv(65536)
    return int(head.split()[1]), body


def ask(server: LiveServer, request: bytes) -> int:
    """The status a request sent whole on a fresh connection gets."""
    with opened(server) as sock:
        sock.sendall(request)
        return read_response(sock)[0]


def seconds_until_closed(sock: socket.socket, since: float, limit: float = 10.0) -> float:
    """When the server closed this connection (end of file or reset), counted from since."""
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - since


def test_headers_over_the_size_limit_are_431(server: LiveServer) -> None:
    limit = LIMITS["max_header_bytes"]
    assert ask(server, request_head(server, "X-Pad: " + "a" * (limit - 200))) == 200
    # Arriving whole (checked once parsed) and far over (cut off while still arriving).
    assert ask(server, request_head(server, "X-Pad: " + "a" * limit)) == 431
    assert ask(server, request_head(server, "X-Pad: " + "a" * 2_000_000)) == 431
    upgrade = ("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13")
    for pad in (9000, limit):  # the first is under the limit, but not under websockets'
        padded = (*upgrade, f"Sec-WebSocket-Key: {WS_KEY}", "X-Pad: " + "a" * pad)
        assert ask(server, request_head(server, *padded, target="/ws/runs/x")) == 431


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def test_never_finished_headers_do_not_grow_memory(server: LiveServer) -> None:
    if not Path(f"/proc/{server.process.pid}/status").is_file():
        pytest.skip("no /proc to read the server's memory from")
    before = resident_mb(server.process.pid)
    for _ in range(4):  # up to 64 MB of header lines that never end
        with opened(server) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            with contextlib.suppress(OSError):  # the server closes, perhaps mid-send
                for _ in range(256):
                    sock.sendall(b"X-Pad: " + b"a" * 65_000 + b"\r\n")
            assert seconds_until_closed(sock, time.monotonic()) < 3
    assert resident_mb(server.process.pid) - before < 16


def test_more_headers_than_the_limit_are_431(server: LiveServer) -> None:
    count = LIMITS["max_headers"]  # Host is one of them
    headers = [f"X-H{i}: v" for i in range(count)]
    assert ask(server, request_head(server, *headers[: count - 1])) == 200
    assert ask(server, request_head(server, *headers)) == 431


def test_unfinished_requests_are_closed_after_the_request_timeout(server: LiveServer) -> None:
    timeout = LIMITS["request_timeout"]
    silent, partial, trickle, body, handshake = (opened(server) for _ in range(5))
    partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    trickle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    body.sendall(
        b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    # A handshake with a body: uvicorn's websocket protocol refuses it, in older releases of
    # the websockets library without a word, in newer ones with a 400 at once.
    handshake.sendall(
        request_head(
            server,
            *("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"),
            f"Sec-WebSocket-Key: {WS_KEY}",
            "Content-Length: 5",
            target="/ws/runs/x",
        )
    )
    start = time.monotonic()
    closed: dict[socket.socket, float] = {}
    received = {sock: b"" for sock in (silent, partial, trickle, body, handshake)}
    while len(closed) < len(received) and time.monotonic() - start < 3 * timeout:
        waiting = [sock for sock in received if sock not in closed]
        for sock in select.select(waiting, [], [], 0.2)[0]:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            received[sock] += chunk
            if not chunk:
                closed[sock] = time.monotonic() - start
        if trickle not in closed:
            try:
                trickle.send(b"a")  # a byte now and then must not restart the clock
            except OSError:
                closed[trickle] = time.monotonic() - start
    for sock in received:
        sock.close()
    assert len(closed) == len(received), "a connection outlived three request timeouts"
    waited = {sock: elapsed for sock, elapsed in closed.items() if sock is not handshake}
    assert all(timeout - 0.5 < elapsed < timeout + 1.5 for elapsed in waited.values()), closed
    if received[handshake].startswith(b"HTTP/1.1 400 "):  # refused at once, and said so
        assert closed[handshake] < 1.0
    else:  # refused without a word: closed at the timeout like the others
        assert timeout - 0.5 < closed[handshake] < timeout + 1.5
    assert received[silent] == b""  # nothing asked, nothing answered
    assert received[partial].startswith(b"HTTP/1.1 408 ")
    assert received[body] == b""  # the app owned this response: it is cut, not answered


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(server: LiveServer) -> None:
    with opened(server) as sock:
        for _ in range(2):  # a second request on the same connection: keep-alive works
            sock.sendall(request_head(server))
            assert read_response(sock)[0] == 200
        answered = time.monotonic()
        elapsed = seconds_until_closed(sock, answered)
    keep_alive = LIMITS["keep_alive_timeout"]
    assert keep_alive - 0.5 < elapsed < LIMITS["request_timeout"] - 0.2


def head_until_reset(sock: socket.socket) -> bytes:
    """What arrives before the server closes or resets the connection."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_connections_past_the_cap_are_answered_503_at_once(server: LiveServer) -> None:
    cap = LIMITS["max_connections"]
    files_before = open_files(server.process.pid)
    idle = [opened(server) for _ in range(cap)]
    try:
        time.sleep(0.2)  # all accepted by the server
        started = time.monotonic()
        for _ in range(100):
            with opened(server) as sock:
                sock.sendall(request_head(server))
                status, body = read_response(sock)
                assert status == 503 and b"max_connections" in body
        assert time.monotonic() - started < 5  # answered, none left hanging
        # A flood that never sends a byte: only LINGERING_REFUSALS of it hold a socket
        # open, so the server keeps file descriptors and still answers.
        flood = [opened(server) for _ in range(LINGERING_REFUSALS + 40)]
        time.sleep(0.2)
        held = open_files(server.process.pid) - files_before
        assert cap <= held <= cap + LINGERING_REFUSALS + 8, held
        with opened(server) as sock:
            sock.sendall(request_head(server))
            assert head_until_reset(sock).startswith(b"HTTP/1.1 503 ")
        for sock in flood:
            sock.close()
    finally:
        for sock in idle:
            sock.close()
    serverkit.wait_for(lambda: httpx.get(f"{server.base}/healthz").status_code == 200, 5)


def test_websockets_outlive_the_request_timeout_and_stay_size_limited(
    server: LiveServer,
) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        created = http.post("/api/runs", json=SMALL)
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        # Stopped while its worker loads: a socket with no frames, whose idle time is all
        # the request timeout could mistake for a slow request.
        assert http.delete(f"/api/runs/{run_id}").json()["state"] == "stopped"
    with connect(f"{server.ws_base}/ws/runs/{run_id}", max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["state"] == "stopped"
        time.sleep(LIMITS["request_timeout"] + 0.5)
        ws.send(json.dumps({"type": "control", "id": 7, "lr": 0.05}))
        reply = json.loads(ws.recv(timeout=10))  # every message is answered: still open
        assert (reply["type"], reply["id"]) == ("error", 7)
        max_body = Settings.model_fields["max_body_bytes"].default
        with pytest.raises(ConnectionClosed) as closed:
            ws.send(" " * (max_body + 1))
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.parametrize("name", CONNECTION_SETTINGS)
def test_each_connection_bound_refuses_one_past_it(name: str) -> None:
    bounds = {
        key: getattr(meta, key)
        for meta in Settings.model_fields[name].metadata
        for key in ("ge", "le")
        if getattr(meta, key, None) is not None
    }
    assert set(bounds) == {"ge", "le"}
    Settings(**{name: bounds["ge"]})
    Settings(**{name: bounds["le"]})
    for wrong in (bounds["ge"] - 1, bounds["le"] + 1):
        with pytest.raises(ValidationError, match=name):
            Settings(**{name: wrong})


def test_the_cap_fits_the_open_file_limit() -> None:
    # Past the open-file limit accept() fails and clients hang instead of getting 503: the
    # soft limit is raised to fit the cap, else the cap is lowered to fit the limit.
    need = 512 + FILES_KEPT_BACK
    assert fit_open_files(512, soft=1024, hard=1024) == (1024, 512)
    assert fit_open_files(512, soft=256, hard=4096) == (need, 512)
    assert fit_open_files(512, soft=256, hard=resource.RLIM_INFINITY) == (need, 512)
    assert fit_open_files(512, soft=400, hard=400) == (400, 400 - FILES_KEPT_BACK)
    assert fit_open_files(512, soft=resource.RLIM_INFINITY, hard=resource.RLIM_INFINITY) == (
        resource.RLIM_INFINITY,
        512,
    )
