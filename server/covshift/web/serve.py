"""`covshift serve`: settings from flags over COVSHIFT_* variables, then uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from covshift.config import describe
from covshift.runtime.handle import ReadyWorker
from covshift.settings import EVERY_INTERFACE, Settings

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
    parser.add_argument(
        "--access-log", action="store_true", help="log one line per HTTP request (default: off)"
    )
    group = parser.add_argument_group("connection limits (bounds in brackets)")
    for name in CONNECTION_SETTINGS:  # help, bounds and default read from the settings
        field = Settings.model_fields[name]
        bounds = ", ".join(
            f"{key} {getattr(meta, key)}"
            for meta in field.metadata
            for key in ("ge", "le")
            if getattr(meta, key, None) is not None
        )
        group.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            metavar="N",
            help=f"{field.description} [{bounds}] (default: {field.default})",
        )
    more = parser.add_argument_group("other settings (each also a COVSHIFT_* variable)")
    for name in OTHER_SETTINGS:
        field = Settings.model_fields[name]
        flag = "--" + name.replace("_", "-")
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        shown = "(the demo config below)" if name == "demo" else f"(default: {default})"
        described = f"{field.description or name.replace('_', ' ')} {shown}"
        if field.annotation is bool:
            more.add_argument(flag, action=argparse.BooleanOptionalAction, help=described)
        elif field.annotation in (int, float):
            number = int if field.annotation is int else float
            more.add_argument(flag, type=number, metavar="N", help=described)
        elif name == "demo":
            more.add_argument(
                flag,
                type=json.loads,
                metavar="JSON",
                help="the demo run's config, as the JSON a POST /api/runs takes",
            )
        elif name in ("allowed_origins", "allowed_hosts"):
            more.add_argument(
                flag, type=_names, metavar="A,B", help=f"{described}; comma-separated"
            )
        else:  # a path
            more.add_argument(flag, type=Path, metavar="DIR", help=described)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


# Settings of web/connections.py, each also a flag: --max-header-bytes and so on.
CONNECTION_SETTINGS = (
    "max_header_bytes",
    "max_headers",
    "request_timeout",
    "keep_alive_timeout",
    "max_connections",
)


# Every other setting, each a flag of its own name: --history-frames, --allowed-hosts...
OTHER_SETTINGS = (
    "demo",
    "demo_store",
    "allowed_origins",
    "allowed_hosts",
    "max_body_bytes",
    "history_frames",
    "client_queue",
    "ws_compression",
    "mnist_dir",
    "command_timeout_s",
    "max_run_memory_mb",
    "ready_worker",
)


def settings_from(args: argparse.Namespace) -> Settings:
    names = ("host", "port", "logdir", "max_runs", *CONNECTION_SETTINGS, *OTHER_SETTINGS)
    overrides: dict[str, Any] = {
        name: value for name in names if (value := getattr(args, name, None)) is not None
    }
    if args.no_browser:
        overrides["open_browser"] = False
    if args.no_demo:
        overrides["demo_run"] = False
    if getattr(args, "access_log", False):
        overrides["access_log"] = True
    return Settings(**overrides)


def page_url(settings: Settings) -> str:
    host = settings.host
    if host in EVERY_INTERFACE:
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
        run_store = RunStore(settings.logdir)
        run_store.ensure_writable()
        # Until this process ends (the kernel drops it even on SIGKILL): a second server on
        # the folder would recover, so rewrite, the runs this one is writing.
        owner = run_store.lock()
    except StoreError as exc:
        print(f"covshift serve: error: {exc}", file=sys.stderr)
        return 2

    # Loads PyTorch on another core while this process loads the web app: the demo takes it.
    ready = ReadyWorker()
    if settings.ready_worker:
        ready.prepare()

    import uvicorn

    from .app import create_app
    from .connections import ConnectionLimits, fit_connection_cap, protocol_class

    url = page_url(settings)
    print(f"covshift: serving on {url}  (runs stored in {settings.logdir.resolve()}; Ctrl+C stops)")
    if settings.host in EVERY_INTERFACE and settings.allowed_hosts is None:
        names = ", ".join(settings.trusted_hosts())
        print(
            f"covshift: answering the host names {names} only; "
            "COVSHIFT_ALLOWED_HOSTS names the others (SECURITY.md)"
        )
    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        request_timeout=settings.request_timeout,
        max_connections=fit_connection_cap(settings.max_connections),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, ready),
            host=settings.host,
            port=settings.port,
            http=protocol_class(limits),
            timeout_keep_alive=settings.keep_alive_timeout,
            # Above max_body_bytes, so the app can answer an oversized message (ws.py).
            ws_max_size=ws_transport_limit(settings.max_body_bytes),
            ws_per_message_deflate=settings.ws_compression,
            server_header=False,
            log_level="info",
            access_log=settings.access_log,
        )
    )
    if settings.open_browser:
        threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
    # On Ctrl+C uvicorn shuts down cleanly (runs stopped and saved), then re-raises it.
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        owner.release()
    return 0 if server.started else 1


def _open_when_started(server: Any, url: str) -> None:
    for _ in range(600):  # a minute at most: the demo run's worker loads in the background
        if server.started:
            if not _open_browser(url):
                print(f"covshift: could not open a browser here; open {url} yourself", flush=True)
            return
        if server.should_exit:
            return
        time.sleep(0.1)


def _open_browser(url: str) -> bool:
    """True when a browser took the URL (webbrowser says False, or raises, when none can)."""
    try:
        return bool(webbrowser.open(url))
    except webbrowser.Error:
        return False
