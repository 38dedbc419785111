"""Helpers for the browser tests: Debian's Chromium, and a server with a small demo run."""

from __future__ import annotations

import shutil
from pathlib import Path

from covshift.config import RunConfig
from covshift.settings import Settings
from serverkit import ThreadedServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright's own browser download does not work here; Debian's Chromium does with these.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# A demo run small enough that its worker is ready in ~2 s and streams ~50 frames/s.
DEMO = RunConfig(
    dataset="moons", depth=2, width=16, steps=10_000_000, probe_every=10, test_every=50, bins=32
)


def demo_server(logdir: Path) -> ThreadedServer:
    """The app with its demo run (in memory), ready once the demo has sent a frame; not
    started yet (start() it, or use it as a context manager)."""
    settings = Settings(logdir=logdir, demo_run=True, demo=DEMO, open_browser=False)
    return ThreadedServer(settings, ready=lambda s: any(run["step"] > 0 for run in s.runs()))
