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


def test_every_server_setting_is_a_flag_and_flags_win() -> None:
    from covshift.cli import build_parser
    from covshift.settings import Settings
    from covshift.web.serve import settings_from

    parser = build_parser()
    serve_help = (
        next(
            action
            for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        )
        .choices["serve"]
        .format_help()
    )
    # Two settings keep their established spellings; every other is --its-name.
    spelled = {"open_browser": "--no-browser", "demo_run": "--no-demo"}
    for name in Settings.model_fields:
        flag = spelled.get(name, "--" + name.replace("_", "-"))
        assert flag in serve_help, f"{name} has no flag {flag}"
    args = parser.parse_args(
        [
            "serve",
            "--history-frames",
            "64",
            "--ws-compression",
            "--allowed-hosts",
            "a.lan, localhost",
            "--demo",
            '{"lr": 1.5, "dataset": "moons"}',
            "--command-timeout-s",
            "2.5",
        ]
    )
    settings = settings_from(args)
    assert settings.history_frames == 64 and settings.ws_compression is True
    assert settings.allowed_hosts == ["a.lan", "localhost"]
    assert settings.demo.lr == 1.5 and settings.demo.dataset == "moons"
    assert settings.command_timeout_s == 2.5
    # A bound is the setting's own: one past it is refused with the field named.
    with pytest.raises(ValueError, match="history_frames"):
        settings_from(parser.parse_args(["serve", "--history-frames", "1"]))
