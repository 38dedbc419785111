"""`covshift serve`: settings from flags over COVSHIFT_* variables, then uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from covshift.config import describe
from covshift.settings import Settings

from .security import ws_transport_limit
from .store import RunStore, StoreError


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    """Flags override the COVSHIFT_* environment variables of the same name."""
    parser.add_argument("--host", help="interface to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, help="port (default: 8000)")
    parser.add_argument("--logdir", type=Path, help="run store directory (default: covshift-logs)")
    parser.add_argument("--max-runs", type=int, help="runs training at once (default: 4)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument("--no-demo", action="store_true", help="do not start a demo run")


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        name: value
        for name in ("host", "port", "logdir", "max_runs")
        if (value := getattr(args, name)) is not None
    }
    if args.no_browser:
        overrides["open_browser"] = False
    if args.no_demo:
        overrides["demo_run"] = False
    return Settings(**overrides)


def page_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # bound everywhere: this machine reaches it on loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/"


def serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"covshift serve: error: {describe(exc)}", file=sys.stderr)
        return 2
    try:
        RunStore(settings.logdir).ensure_writable()
    except StoreError as exc:
        print(f"covshift serve: error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from .app import create_app

    url = page_url(settings)
    print(f"covshift: serving on {url}  (runs stored in {settings.logdir.resolve()}; Ctrl+C stops)")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            # Above max_body_bytes, so the app can answer an oversized message (ws.py).
            ws_max_size=ws_transport_limit(settings.max_body_bytes),
            ws_per_message_deflate=settings.ws_compression,
            server_header=False,
            log_level="info",
        )
    )
    if settings.open_browser:
        threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
    # On Ctrl+C uvicorn shuts down cleanly (runs stopped and saved), then re-raises it.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 1


def _open_when_started(server: Any, url: str) -> None:
    for _ in range(600):  # a minute at most: the demo run's worker loads in the background
        if server.started:
            webbrowser.open(url)
            return
        if server.should_exit:
            return
        time.sleep(0.1)
