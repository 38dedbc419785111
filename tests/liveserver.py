"""A real `covshift serve` in a subprocess: uvicorn, real sockets, the CLI's own defaults."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from serverkit import free_port

# `covshift` the console script may not be on PATH (a venv not activated): call its main.
SERVE = "import sys; from covshift.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    address: str = "127.0.0.1"  # where clients connect: the bound address, or loopback

    @property
    def netloc(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.netloc}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.netloc}"

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(
    scratch: Path,
    *flags: str,
    ready_within: float = 60.0,
    address: str = "127.0.0.1",
    browser: bool = False,
    env_overrides: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """`covshift serve --no-browser` on a free port with its run store in scratch/logs;
    stopped with SIGTERM (a clean uvicorn shutdown) when the block ends. `address` is where
    clients reach it (pass `--host` in flags to bind elsewhere than loopback); `browser`
    leaves out --no-browser."""
    port = free_port()
    log = scratch / "serve.log"
    # The test's own COVSHIFT_* variables must not change the defaults under test.
    env = {name: value for name, value in os.environ.items() if not name.startswith("COVSHIFT_")}
    env.update(env_overrides or {})
    command = [sys.executable, "-c", SERVE, "serve", "--port", str(port)]
    if not browser:
        command.append("--no-browser")
    command += ["--logdir", str(scratch / "logs"), *flags]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = LiveServer(process, port, log, address)
    try:
        _wait_until_up(server, ready_within)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(server: LiveServer, seconds: float) -> None:
    end = time.monotonic() + seconds
    while True:
        if server.process.poll() is not None:
            raise AssertionError(f"covshift serve exited early:\n{server.output()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                return
        if time.monotonic() > end:
            raise AssertionError(f"covshift serve not up within {seconds} s:\n{server.output()}")
        time.sleep(0.1)


def raw_request(
    port: int, target: str, host: str | None = None, address: str = "127.0.0.1"
) -> tuple[int, bytes, bytes]:
    """One GET with the request target sent byte for byte (no client normalises `..` or
    percent-escapes); returns (status, headers, body)."""
    host = host or (f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((address, port), timeout=10) as sock:
        sock.sendall(request.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, _, headers = head.partition(b"\r\n")
    return int(status_line.split()[1]), headers.lower(), body
