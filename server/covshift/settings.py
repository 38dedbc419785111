"""Server settings: defaults, COVSHIFT_* environment variables and command-line overrides."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import ICS_EVERY_WHEN_ON, RunConfig

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _demo_config() -> RunConfig:
    # A million steps keeps the demo alive for the length of a lesson, and the gradient
    # ICS measure is on so every chart has data; a user run uses the config it is given.
    return RunConfig.model_validate(
        {
            "dataset": "digits",
            "steps": 1_000_000,
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
    # The demo restarts at every launch and, at ~850 steps/s with 50 KB frames, would
    # write gigabytes an hour: it lives in memory only unless asked otherwise.
    demo_store: bool = Field(
        default=False, description="also write the demo run to the log directory"
    )
    open_browser: bool = True
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="extra origins allowed to open websockets and call the API (CORS); "
        "the page's own origin is always allowed",
    )
    # None: only the loopback names when bound to loopback (DNS-rebinding defence), any
    # host otherwise. ["*"] allows any host.
    allowed_hosts: list[str] | None = None
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # ~30 KB per frame for the default config: 500 frames is ~15 MB per live run, what a
    # new tab downloads on connect, and as many columns as the page's charts keep.
    history_frames: int = Field(default=500, ge=2, le=1_000_000)
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

    def trusted_hosts(self) -> list[str]:
        """Host headers the server answers (TrustedHostMiddleware), or ["*"]."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        if self.host in LOOPBACK_HOSTS:
            return list(LOOPBACK_HOSTS)
        return ["*"]
