"""`covshift serve` as a person starts it: what it says, and what it keeps off the screen."""

from __future__ import annotations

from pathlib import Path

import httpx
import liveserver
import pytest
from serverkit import wait_for

pytestmark = pytest.mark.slow


def test_serve_says_when_it_could_not_open_a_browser(tmp_path: Path) -> None:
    # No display and a browser command that fails: webbrowser.open answers False.
    no_browser = {"BROWSER": "/bin/false", "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    with liveserver.serve(tmp_path, "--no-demo", browser=True, env_overrides=no_browser) as server:
        wait_for(lambda: "could not open a browser" in server.output(), timeout=20)
        assert f"open http://127.0.0.1:{server.port}/ yourself" in server.output()


def test_the_access_log_is_off_unless_asked_for(tmp_path: Path) -> None:
    for name in ("quiet", "loud"):
        (tmp_path / name).mkdir()
    with liveserver.serve(tmp_path / "quiet", "--no-demo") as server:
        for _ in range(3):
            assert httpx.get(f"{server.base}/api/runs").status_code == 200
        quiet = server.output()
    assert "GET /api/runs" not in quiet and "serving on" in quiet
    with liveserver.serve(tmp_path / "loud", "--no-demo", "--access-log") as server:
        assert httpx.get(f"{server.base}/api/runs").status_code == 200
        wait_for(lambda: "GET /api/runs" in server.output(), timeout=10)
