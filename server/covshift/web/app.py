"""Assembles the FastAPI app: lifespan (the run manager), routers, middleware, static files."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import Response

from covshift import __version__
from covshift.errors import ConfigError
from covshift.page_files import PLOTLY_BASIC, frontend_dir, plotly_basic
from covshift.reports.run import DamagedRun, NoDataYet
from covshift.runtime.handle import ReadyWorker
from covshift.settings import Settings

from . import api, docs, rules, ws
from .assets import GZIP_LEVEL, GZIP_MINIMUM_BYTES, PageFiles, VendorFile
from .commands import RunNotActive, TooManyCommands, WorkerTimeout
from .manager import RunManager, TooManyRuns, UnknownRun
from .security import BodyLimitMiddleware, HeaderLimitMiddleware, SecurityHeadersMiddleware
from .store import StoreError

log = logging.getLogger(__name__)

FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#1f3b57"/>'
    '<path d="M2 12 Q5 2 8 9 T14 4" fill="none" stroke="#f5a623" stroke-width="2"/></svg>'
)


def create_app(settings: Settings | None = None, ready: ReadyWorker | None = None) -> FastAPI:
    """The app; `ready`: a worker process `covshift serve` started before loading it."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, RunManager]]:
        manager = RunManager(settings, ready)
        await manager.open()
        try:
            yield {"manager": manager}
        finally:
            await manager.close()

    app = FastAPI(
        title="covshift",
        version=__version__,
        description="Watch internal covariate shift live: runs, live controls, exports. "
        "Live frames stream on the websocket /ws/runs/{id} (docs/protocol.md).",
        lifespan=lifespan,
        # FastAPI's pages load a CDN's scripts and start them inline: the CSP blocks both.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.include_router(api.router)
    app.include_router(docs.router)
    app.include_router(rules.router)
    app.include_router(ws.router)
    _add_errors(app)
    _add_assets(app)
    # Innermost: compresses what the routes answer (JSON, exports, the page's files);
    # plotly.js comes compressed already and passes through.
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=GZIP_LEVEL)
    # Added last = outermost: the header and body limits see a request before anything
    # reads it.
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["content-type"],
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts())
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(
        HeaderLimitMiddleware,
        max_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )
    return app


def _add_errors(app: FastAPI) -> None:
    statuses: dict[type[Exception], int] = {
        UnknownRun: 404,
        RunNotActive: 409,
        NoDataYet: 409,
        DamagedRun: 409,
        ConfigError: 422,
        TooManyRuns: 429,
        TooManyCommands: 429,
        StoreError: 507,
        WorkerTimeout: 504,
    }

    async def problem(request: Request, exc: Exception) -> Response:
        message = exc.args[0] if isinstance(exc, LookupError) and exc.args else str(exc)
        return JSONResponse({"detail": message}, status_code=statuses[type(exc)])

    for error in statuses:
        app.add_exception_handler(error, problem)

    async def invalid(request: Request, exc: Exception) -> Response:
        # FastAPI's own 422, except that it echoes each bad input, and Python's json reads
        # NaN and Infinity: echoed as numbers they made the response itself fail (500).
        assert isinstance(exc, RequestValidationError)
        errors = _finite(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid)


def _finite(value: Any) -> Any:
    """value with every NaN or infinity replaced by its JSON-ish spelling, as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _add_assets(app: FastAPI) -> None:
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(
            FAVICON, media_type="image/svg+xml", headers={"cache-control": "max-age=86400"}
        )

    found = plotly_basic()
    plotly = VendorFile(found, "text/javascript") if found is not None else None

    # Before the page's mount, so the bundle is gzipped once and kept rather than per response.
    @app.get(f"/vendor/{PLOTLY_BASIC}", include_in_schema=False)
    async def plotly_basic_js(request: Request) -> Response:
        if plotly is None:
            missing = {"detail": f"frontend/vendor/{PLOTLY_BASIC} is missing"}
            return JSONResponse(missing, status_code=404)
        return await plotly.response(request)

    page = frontend_dir()
    if page is not None:
        # Mounted last, at "/", so the API and websocket routes above take precedence.
        app.mount("/", PageFiles(directory=page, html=True), name="frontend")
    else:
        log.warning("no frontend/ directory found: serving the API only")
