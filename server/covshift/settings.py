"""Server settings: defaults, COVSHIFT_* environment variables and command-line overrides."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import ICS_EVERY_WHEN_ON, RunConfig

# What a browser on this machine sends as Host (port aside) for a loopback address; an IPv6
# literal comes in brackets. DNS rebinding cannot forge these: a page on another name
# (evil.example resolving to 127.0.0.1) sends that other name.
LOOPBACK_HOST_NAMES = ("localhost", "127.0.0.1", "[::1]")
# Bind addresses meaning every interface: they are no name a client could use.
EVERY_INTERFACE = ("0.0.0.0", "::", "")
_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9._-]+")


def host_pattern(entry: str) -> str:
    """entry as the Host check compares it: lower case, an IPv6 literal in brackets.
    ValueError for what no Host header can match (a port, a scheme, a misplaced `*`)."""
    name = entry.strip().lower()
    if name == "*" or _HOST_NAME.fullmatch(name):
        return name
    try:
        return f"[{ipaddress.IPv6Address(name.removeprefix('[').removesuffix(']'))}]"
    except ValueError:
        raise ValueError(
            f"{entry!r} is not a host name: give the name alone, without scheme or port "
            "(e.g. 'covshift.example.org', '*.example.org', '::1'), or '*' for any"
        ) from None


def _demo_config() -> RunConfig:
    # What the lesson needs the demo to show for longer than a few seconds, measured on the
    # same 256 held-out examples every frame (drift_fixed), not on the drawn batches:
    # - MNIST-1D, not digits: on digits both nets have learned by step ~500 (plain's test
    #   accuracy stays at 0.961 from step 800) and plain's weights then barely move, so its
    #   last layer's units drift 0.2x as far as BN's; what still moves in its pooled batch
    #   band is which examples were drawn. On MNIST-1D both keep learning for thousands of
    #   steps and plain's units drift 3.7-4.7x as far as BN's over steps 0-2,000 and
    #   2.1-2.6x over 2,000-3,000 (seed 0, lr 2; 1.2-1.7x at lr 0.5).
    # - Slow motion: 50 steps per second, a frame every 10 steps, so the first minute shows
    #   the first 3,000 steps, where the shift happens, five frames a second.
    # A million steps keeps the demo alive for the length of a lesson, and the gradient
    # ICS measure is on so every chart has data; a user run uses the config it is given.
    return RunConfig.model_validate(
        {
            "dataset": "mnist1d",
            "lr": 2.0,
            "steps": 1_000_000,
            "steps_per_s": 50,
            "probe_every": 10,
            "test_every": 50,
            "ics_every": ICS_EVERY_WHEN_ON,
            "compare_cumulative": True,
        }
    )


class Settings(BaseSettings):
    """Everything the server needs to start; each field is also COVSHIFT_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="COVSHIFT_", extra="forbid", frozen=True)

    # Loopback only: the page controls training processes, so exposing it is a decision.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    logdir: Path = Field(default=Path("covshift-logs"), description="run store: one folder per run")
    max_runs: int = Field(
        default=4, ge=1, le=64, description="runs training at once (created/running/paused)"
    )
    demo_run: bool = Field(
        default=True, description="start a demo run at launch so the page is alive"
    )
    demo: RunConfig = Field(default_factory=_demo_config, description="the demo run's config")
    # The demo restarts at every launch and, at five ~30 KB frames a second, would write
    # half a gigabyte an hour: it lives in memory only unless asked otherwise.
    demo_store: bool = Field(
        default=False, description="also write the demo run to the log directory"
    )
    open_browser: bool = Field(default=True, description="open the page in a browser at start")
    # Off: one open tab polls the run list every 2 s, and a line per request would scroll
    # the URL off the terminal. Errors are logged either way.
    access_log: bool = Field(default=False, description="log one line per HTTP request")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="extra origins allowed to open websockets and call the API (CORS); "
        "the page's own origin is always allowed",
    )
    # None: the loopback names and the bound address (DNS-rebinding defence), wherever it is
    # bound, 0.0.0.0 included (as in the Docker image). ["*"] turns the Host check off.
    allowed_hosts: list[str] | None = Field(
        default=None,
        description="Host header names answered (any port), replacing the loopback names; "
        "'*' answers any name, which lets DNS rebinding in",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="bytes of a request body or websocket message; more is answered 413",
    )
    # ~30 KB per frame for the default config: 500 frames is ~15 MB per live run, what a
    # new tab downloads on connect, and as many columns as the page's charts keep.
    history_frames: int = Field(
        default=500,
        ge=2,
        le=1_000_000,
        description="frames a run keeps in memory for a new tab (evenly thinned over the run)",
    )
    client_queue: int = Field(
        default=256, ge=1, le=100_000, description="messages buffered per client"
    )
    # Off: deflating a 50 KB frame once per client costs more CPU than the whole fan-out
    # (p95 latency with 10 local clients: 28 ms with, 6 ms without). Worth it only over
    # slow links.
    ws_compression: bool = Field(default=False, description="permessage-deflate on websockets")
    mnist_dir: Path | None = Field(
        default=None,
        description="directory with the MNIST IDX files (server-side; clients never send paths)",
    )
    # The HTTP edge (web/connections.py). A browser's request head is 1-4 KB, cookies of
    # other apps on localhost included (cookies ignore ports); nginx's default allows 32 KB.
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=4 * 1024,
        le=1024 * 1024,
        description="bytes of headers in one request; more is answered 431",
    )
    max_headers: int = Field(
        default=100, ge=16, le=1000, description="headers in one request; more is answered 431"
    )
    # A request arrives whole in milliseconds; 10 s still lets a 64 KiB body through a slow
    # link, and bounds how long a slow trickle (slowloris) holds a connection.
    request_timeout: int = Field(
        default=10,
        ge=1,
        le=600,
        description="seconds for a request to arrive whole, from the connection or its "
        "first byte; then it is answered 408 and closed",
    )
    keep_alive_timeout: int = Field(
        default=5, ge=1, le=600, description="seconds an idle keep-alive connection stays open"
    )
    # A tab holds its websocket and a few keep-alive connections: 512 is a class of users
    # with room to spare, and fits under the usual `ulimit -n` of 1024.
    max_connections: int = Field(
        default=512,
        ge=8,
        le=65_536,
        description="open connections, websockets included; one more is answered 503",
    )
    # A worker takes changes between training steps: milliseconds for the networks the page
    # offers, up to tens of seconds for the largest at large batches, or while it loads.
    command_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds a change waits for the run's worker to take it; then it is "
        "answered 504 and never applied",
    )
    # One run's worker at most: the default config needs ~0.4 GB (mostly torch itself), the
    # largest the bounds accept over 10 GB; max_runs of these must fit in the machine.
    max_run_memory_mb: int = Field(
        default=2048,
        ge=256,
        le=1 << 20,
        description="memory one run may use (MB): a run estimated to need more is refused "
        "(422), and its worker process is held to it by the OS",
    )

    # A new run waits ~2.5 s for a process started then to load PyTorch; one loaded ahead
    # trains at once. Its cost: ~0.4 GB held while no run has taken it (PyTorch, scikit-learn).
    ready_worker: bool = Field(
        default=True,
        description="keep a worker process loaded ahead (~0.4 GB), so that a new run, the "
        "demo too, trains at once",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str] | None) -> list[str] | None:
        return None if hosts is None else [host_pattern(host) for host in hosts]

    def trusted_hosts(self) -> list[str]:
        """Host names the server answers (TrustedHostMiddleware, any port), or ["*"]:
        allowed_hosts if set, else the loopback names plus the address it is bound to (an
        address literal cannot be forged by DNS rebinding; 0.0.0.0 adds nothing)."""
        if self.allowed_hosts is not None:
            return list(self.allowed_hosts)
        names = list(LOOPBACK_HOST_NAMES)
        if self.host not in EVERY_INTERFACE:
            names.append(host_pattern(self.host))
        return list(dict.fromkeys(names))
