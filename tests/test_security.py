"""Security defaults against a real `covshift serve`: loopback bind, Host and Origin checks
(also bound to every interface, as in the Docker image, and on ::1), no path traversal, CSP
everywhere, unguessable run ids, the websocket size limit; and SECURITY.md's reverse-proxy
settings. Connection limits (header size, timeouts, the connection cap): test_connections.py.

Covered elsewhere, not repeated here: every Origin case of the websocket check
(test_server_ws.py::test_cross_origin_handshakes_are_refused), body limits on HTTP
(test_server_api.py::test_oversized_bodies_are_413), and the container's non-root user
(test_dockerfile.py::test_image_runs_as_non_root_and_declares_port_volume_and_health).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import serverkit
from covshift.settings import Settings
from covshift.web.app import create_app
from covshift.web.security import CONTENT_SECURITY_POLICY
from fastapi.testclient import TestClient
from liveserver import LiveServer, raw_request, serve
from pydantic import ValidationError
from serverkit import SMALL
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

pytestmark = pytest.mark.slow  # a real server process, and workers spawned for run ids

MAX_BODY = Settings.model_fields["max_body_bytes"].default
# Files one directory above the page's (the repository root in a source tree) and far
# outside it: what a traversal would reach.
SECRETS = (b"[project]", b"root:x:0:0")
SECURITY_MD = (Path(__file__).resolve().parent.parent / "SECURITY.md").read_text()


_deadline = serverkit.per_test_deadline(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The CLI with its defaults (no --host), no demo run, one run at a time."""
    with serve(tmp_path_factory.mktemp("security"), "--no-demo", "--max-runs", "1") as server:
        yield server


@pytest.fixture(scope="module")
def run_ids(server: LiveServer) -> list[str]:
    """Ids of runs created one after another, each stopped at once (still loading)."""
    ids = []
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for _ in range(8):
            created = http.post("/api/runs", json=SMALL)
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
            assert http.delete(f"/api/runs/{ids[-1]}").json()["state"] == "stopped"
    return ids


def listening_addresses(port: int) -> set[str]:
    """Addresses with a socket listening on this port, from the kernel's tables."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path("/proc/net", table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if sys.byteorder == "little":  # printed as host-order 32-bit words
                    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, raw))
    return found


def test_the_default_bind_is_loopback_only(server: LiveServer) -> None:
    assert Settings.model_fields["host"].default == "127.0.0.1"
    assert f"serving on http://127.0.0.1:{server.port}/" in server.output()
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("no /proc/net/tcp to read the listening address from")
    assert listening_addresses(server.port) == {"127.0.0.1"}


def test_a_foreign_host_header_is_refused_by_default(server: LiveServer) -> None:
    # DNS rebinding: evil.example resolving to 127.0.0.1 reaches the port, not the app.
    assert raw_request(server.port, "/healthz", host="evil.example")[0] == 400
    assert raw_request(server.port, "/healthz", host=f"localhost:{server.port}")[0] == 200


@pytest.mark.parametrize(
    "target",
    [
        "/../pyproject.toml",
        "/js/../../pyproject.toml",
        "/static/../../etc/passwd",
        "/js/../../../../../../etc/passwd",
        "/%2e%2e/pyproject.toml",
        "/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "/js/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/%252e%252e/pyproject.toml",  # double-encoded
        "/..%5cpyproject.toml",  # backslash
        "/vendor/../../pyproject.toml",
        "//etc/passwd",
        "/etc/passwd",
        "/%2fetc%2fpasswd",
        "http://127.0.0.1/../pyproject.toml",  # absolute-form request target
        "/api/runs/..%2f..%2f..%2fetc%2fpasswd/export",
    ],
)
def test_path_traversal_is_refused(server: LiveServer, target: str) -> None:
    status, _, body = raw_request(server.port, target)
    assert status in (400, 404), (status, body[:200])
    assert not any(secret in body for secret in SECRETS)


def test_dot_segments_that_stay_inside_the_page_folder_still_resolve(server: LiveServer) -> None:
    # So the refusals above are the folder boundary at work, not escapes left undecoded.
    for target in ("/js/../index.html", "/js/%2e%2e/index.html"):
        status, _, body = raw_request(server.port, target)
        assert status == 200 and body.startswith(b"<!doctype html>")


@pytest.mark.parametrize(
    "target",
    ["/", "/index.html", "/js/main.js", "/style.css", "/vendor/plotly-basic.min.js", "/nope"],
)
def test_the_page_and_static_files_carry_the_security_headers(
    server: LiveServer, target: str
) -> None:
    status, headers, _ = raw_request(server.port, target)
    assert status == (404 if target == "/nope" else 200)
    csp = f"content-security-policy: {CONTENT_SECURITY_POLICY}".lower().encode()
    assert csp in headers.split(b"\r\n")
    assert b"x-content-type-options: nosniff" in headers.split(b"\r\n")


def test_a_cross_origin_websocket_handshake_is_refused(
    server: LiveServer, run_ids: list[str]
) -> None:
    url = f"{server.ws_base}/ws/runs/{run_ids[0]}"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=Origin("http://evil.example"))
    assert refused.value.response.status_code == 403
    with connect(url, origin=Origin(f"http://127.0.0.1:{server.port}")) as ws:
        # stopped while loading: no hello, its history is the state event
        assert json.loads(ws.recv(timeout=10))["state"] == "stopped"


def test_a_websocket_message_over_the_body_limit_closes_the_socket(
    server: LiveServer, run_ids: list[str]
) -> None:
    with connect(f"{server.ws_base}/ws/runs/{run_ids[0]}", max_size=None) as ws:
        ws.send('{"type": "control", "id": 1, "lr": 0.1}')
        with pytest.raises(ConnectionClosed) as closed:
            ws.send(" " * (MAX_BODY + 1))
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


def test_run_ids_are_unguessable(run_ids: list[str]) -> None:
    decoded = [base64.urlsafe_b64decode(run_id + "=" * (-len(run_id) % 4)) for run_id in run_ids]
    assert all(len(raw) * 8 >= 122 for raw in decoded)  # at least a uuid4's random bits
    assert len(set(run_ids)) == len(run_ids)
    bits = [int.from_bytes(raw, "big") for raw in decoded]
    for a, b in itertools.combinations(bits, 2):
        # Random 128-bit ids differ in 64 ± 6 bits; a counter or a clock in them would not.
        assert 24 <= bin(a ^ b).count("1") <= 104
    assert len({run_id[:4] for run_id in run_ids}) == len(run_ids)  # no shared prefix


def test_stats_say_how_full_the_queues_are_and_nothing_else(
    server: LiveServer, run_ids: list[str]
) -> None:
    stats = httpx.get(f"{server.base}/api/stats").json()
    assert set(stats) == {"active_runs", "clients", "queue_limit", "queued", "dropped"}
    assert stats["queue_limit"] == Settings.model_fields["client_queue"].default
    text = str(stats)
    assert not any(run_id in text for run_id in run_ids)


def _documented(name: str) -> list[str]:
    """A setting's value in SECURITY.md's reverse-proxy recipe."""
    found = re.search(rf"COVSHIFT_{name}='(\[.*?\])'", SECURITY_MD)
    assert found, f"COVSHIFT_{name} is not in SECURITY.md"
    values: list[str] = json.loads(found.group(1))
    return values


@pytest.mark.parametrize("forwarded_host", ["covshift.example.org", "127.0.0.1:8000"])
def test_the_reverse_proxy_recipe_lets_the_public_page_in_and_no_one_else(
    tmp_path: Path, forwarded_host: str
) -> None:
    """SECURITY.md's settings, whether the proxy forwards the public Host or its own."""
    settings = serverkit.settings(
        tmp_path,
        allowed_hosts=_documented("ALLOWED_HOSTS"),
        allowed_origins=_documented("ALLOWED_ORIGINS"),
    )
    # TestClient's websockets say Host: testserver whatever the base URL: name it.
    public = {"host": forwarded_host, "origin": "https://covshift.example.org"}
    foreign = {**public, "origin": "https://evil.example"}
    with TestClient(create_app(settings), base_url=f"http://{forwarded_host}") as client:
        assert client.get("/healthz").status_code == 200
        with client.websocket_connect("/ws/runs/none", headers=public) as ws:
            assert json.loads(ws.receive_text())["type"] == "error"  # past the check: no run
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws/runs/none", headers=foreign),
        ):
            pass
        assert refused.value.code == 1008
        assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400


REBOUND = "rebind.evil.example"  # a name the attacker points at 127.0.0.1 (DNS rebinding)
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: any 16 bytes will do


def handshake_status(port: int, host: str, origin: str, address: str = "127.0.0.1") -> int:
    """The status a websocket handshake gets, with Host and Origin sent exactly as given."""
    request = (
        f"GET /ws/runs/none HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((address, port), timeout=10) as sock:
        sock.sendall(request.encode("latin-1"))
        head = b""
        while b"\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
    return int(head.split()[1])


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Served as the Docker image serves: every interface, no allowed hosts (the image's
    environment is checked in test_dockerfile.py)."""
    scratch = tmp_path_factory.mktemp("image")
    with serve(scratch, "--host", "0.0.0.0", "--no-demo", "--max-runs", "1") as server:
        yield server


def test_bound_everywhere_a_rebound_host_name_is_still_refused(image_server: LiveServer) -> None:
    port = image_server.port
    rebound = {"host": REBOUND, "origin": f"http://{REBOUND}"}
    with httpx.Client(base_url=image_server.base, timeout=30) as http:
        assert http.get("/api/runs", headers=rebound).status_code == 400
        assert http.post("/api/runs", json=SMALL, headers=rebound).status_code == 400
        local = {"host": f"localhost:{port}", "origin": f"http://localhost:{port}"}
        listed = http.get("/api/runs", headers=local)
        assert listed.status_code == 200 and listed.json() == []  # nothing was created
    assert handshake_status(port, REBOUND, f"http://{REBOUND}") == 400
    # The handshake passes the Host and Origin checks (101), then finds no run "none".
    assert handshake_status(port, f"localhost:{port}", f"http://localhost:{port}") == 101
    for name in (f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
        assert raw_request(port, "/healthz", host=name)[0] == 200, name


def test_the_host_check_accepts_the_bracketed_ipv6_loopback(tmp_path: Path) -> None:
    # A browser sends `Host: [::1]:8000` for http://[::1]:8000/, brackets and all.
    settings = serverkit.settings(tmp_path, host="::1", allowed_hosts=None)
    assert "[::1]" in settings.trusted_hosts()
    with TestClient(create_app(settings), base_url="http://[::1]:8000") as client:
        assert client.get("/healthz", headers={"host": "[::1]:8000"}).status_code == 200
        assert client.get("/healthz", headers={"host": "[::1]"}).status_code == 200
        assert client.get("/healthz", headers={"host": REBOUND}).status_code == 400


def test_allowed_hosts_take_bare_ipv6_and_refuse_ports_and_schemes(tmp_path: Path) -> None:
    assert Settings(allowed_hosts=["::1", "Example.org", "*.example.org"]).trusted_hosts() == [
        "[::1]",
        "example.org",
        "*.example.org",
    ]
    for wrong in ("localhost:8000", "http://example.org", "ex*ample.org", ""):
        with pytest.raises(ValidationError, match="allowed_hosts") as refused:
            Settings(allowed_hosts=[wrong])
        assert repr(wrong) in str(refused.value)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_serving_on_the_ipv6_loopback_answers_its_browser(tmp_path: Path) -> None:
    if not _ipv6_loopback():
        pytest.skip("::1 cannot be bound here: this machine has no IPv6 loopback")
    with serve(tmp_path, "--host", "::1", "--no-demo", address="::1", ready_within=20) as server:
        port = server.port
        assert f"serving on http://[::1]:{port}/" in server.output()
        assert raw_request(port, "/healthz", address="::1")[0] == 200  # Host: [::1]:port
        assert raw_request(port, "/", address="::1")[0] == 200
        assert handshake_status(port, f"[::1]:{port}", f"http://[::1]:{port}", "::1") == 101
        assert raw_request(port, "/healthz", host=REBOUND, address="::1")[0] == 400
