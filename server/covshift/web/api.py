"""HTTP routes: health, fan-out stats, and runs (list, create, read, change, stop, export,
report, doctor). Thin: the manager does the work; errors map to status codes in app.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Iterator
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response

from covshift.config import describe
from covshift.errors import ConfigError
from covshift.reports.doctor import diagnose_lines
from covshift.reports.export import csv_lines
from covshift.reports.run import report_filename, report_html
from covshift.reports.sweep import sweep_report_html
from covshift.reports.text import Language

from .deps import Manager, RunDep
from .lifecycle import RunInfo
from .schemas import RunPatch, RunRequest

router = APIRouter()


class Problem(BaseModel):
    """An error: `detail` says what is wrong, starting with the field when there is one."""

    detail: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    active_runs: int


class Stats(BaseModel):
    """What the websocket fan-out holds now: counts only, no ids, addresses or paths."""

    active_runs: int
    clients: int = Field(description="websocket clients connected now, over every run")
    queue_limit: int = Field(description="client_queue: the most messages one client's queue holds")
    queued: list[int] = Field(description="messages waiting in each client's queue, largest first")
    dropped: int = Field(description="messages dropped so far from the connected clients' queues")


class FieldError(BaseModel):
    """One of FastAPI's validation errors: where (`loc`, e.g. ["body", "lr"]) and what."""

    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    """422: FastAPI's list of field errors when the body does not fit the schema, or one line
    starting with the field when a check across fields or the trainer refuses a value."""

    detail: list[FieldError] | str


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such run"}}
# Bodies are read before the route runs: FastAPI answers 400 to one that is not UTF-8 (or
# is nested too deep to parse), BodyLimitMiddleware 413 to one over max_body_bytes.
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "the body could not be parsed as JSON"},
    413: {"model": Problem, "description": "the body is over max_body_bytes"},
}
NOT_ACTIVE: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "the run has ended, before or during the change"},
    422: {
        "model": Invalid,
        "description": "a value out of bounds or refused by the trainer, or a batch_size "
        "that would need more memory than max_run_memory_mb",
    },
    504: {
        "model": Problem,
        "description": "the worker did not take the change within command_timeout_s: "
        "it was not applied and never will be",
    },
}


@router.get("/healthz", tags=["health"])
async def healthz(manager: Manager) -> Health:
    """The server is up and its event loop answers."""
    return Health(active_runs=manager.active_count())


@router.get("/api/stats", tags=["health"])
async def stats(manager: Manager) -> Stats:
    """The clients' send queues: a slow client's fills up to queue_limit, then drops frames."""
    queues = [client for run in manager for client in run.clients]
    return Stats(
        active_runs=manager.active_count(),
        clients=len(queues),
        queue_limit=manager.settings.client_queue,
        queued=sorted((len(queue) for queue in queues), reverse=True),
        dropped=sum(queue.dropped for queue in queues),
    )


@router.get("/api/runs", tags=["runs"])
async def list_runs(manager: Manager) -> list[RunInfo]:
    """Every run, live and stored, oldest first."""
    return [run.info() for run in manager]


@router.post(
    "/api/runs",
    status_code=201,
    tags=["runs"],
    responses={
        **BAD_BODY,
        422: {
            "model": Invalid,
            "description": "a field out of bounds or unknown (named), or a run estimated to "
            "need more memory than max_run_memory_mb",
        },
        429: {"model": Problem, "description": "max_runs runs are active already"},
        507: {"model": Problem, "description": "the run's folder could not be created"},
    },
)
async def create_run(body: RunRequest, manager: Manager) -> RunInfo:
    """Start a run, or with a sweep preset a sweep (docs/protocol.md, *Sweeps*). Its worker
    loads data, then streams on /ws/runs/{id}."""
    try:
        config = body.to_config(
            str(manager.settings.mnist_dir) if manager.settings.mnist_dir else None
        )
        sweep = body.sweep_plan(config)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    run = await manager.create(config, sweep=sweep)
    return run.info()


@router.get("/api/runs/{run_id}", tags=["runs"], responses=NOT_FOUND)
async def get_run(run: RunDep) -> RunInfo:
    return run.info()


@router.patch(
    "/api/runs/{run_id}", tags=["runs"], responses={**NOT_FOUND, **BAD_BODY, **NOT_ACTIVE}
)
async def change_run(run: RunDep, body: RunPatch, manager: Manager) -> RunInfo:
    """Change live controls; each applies at the run's next step and is broadcast to every
    client as an event. Returns the run after the change."""
    return await manager.change(run, body.changes())


WATCHED: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "a watched run, which only its own process stops"}
}


@router.delete("/api/runs/{run_id}", tags=["runs"], responses={**NOT_FOUND, **WATCHED})
async def stop_run(run: RunDep, manager: Manager) -> RunInfo:
    """Stop training; the run's data stays (listed, exportable, replayable). A watched run
    (source "watch") is stopped by its own process: 409 while it is active."""
    return await manager.stop(run)


@router.get(
    "/api/runs/{run_id}/export",
    tags=["runs"],
    responses={
        **NOT_FOUND,
        200: {
            "content": {"application/x-ndjson": {}, "text/csv": {}},
            "description": "jsonl: frames.jsonl (hello, frames, events; docs/protocol.md); "
            "csv: one row per frame per variant (columns in docs/server.md)",
        },
    },
)
async def export_run(
    run: RunDep,
    manager: Manager,
    format: Literal["jsonl", "csv"] = Query("jsonl", description="file format"),
) -> Response:
    """Download a run. A demo run kept only in memory exports its (downsampled) history."""
    in_memory = run.export_lines()
    filename = f"covshift-{run.id}.{format}"
    headers = {"content-disposition": f'attachment; filename="{filename}"'}
    if format == "jsonl" and in_memory is None and run.state.terminal:
        # Only a finished file: a growing one would outrun its Content-Length.
        file = manager.store.open_frames(run.id)  # None when it is a link (never followed)
        if file is not None:
            size = os.fstat(file.fileno()).st_size
            headers["content-length"] = str(size)
            return StreamingResponse(
                _chunks(file, size), media_type="application/x-ndjson", headers=headers
            )
    lines: Iterator[str] = iter(in_memory) if in_memory is not None else manager.store.lines(run.id)
    if format == "csv":
        return StreamingResponse(csv_lines(lines), media_type="text/csv", headers=headers)
    return StreamingResponse(
        (line + "\n" for line in lines), media_type="application/x-ndjson", headers=headers
    )


@router.get(
    "/api/runs/{run_id}/report",
    tags=["runs"],
    # Not HTMLResponse: FastAPI would list the JSON errors below as text/html too.
    response_class=Response,
    responses={
        **NOT_FOUND,
        409: {"model": Problem, "description": "the run has no data yet"},
        200: {
            "content": {"text/html": {"schema": {"type": "string"}}},
            "description": "the run's self-contained HTML report (plotly.js inlined); a "
            "sweep's plots its points against the swept value",
        },
    },
)
async def report_run(
    run: RunDep,
    lang: Annotated[
        Language, Query(description="the report's language, as the page's (en, ko)")
    ] = "en",
) -> Response:
    """Download the HTML report of a live or finished run: the same one `covshift run --out`
    writes, from what a new tab would get (the history rule: frames downsampled to at most
    history_frames), so a report's memory does not grow with the run's length."""
    hello, messages = await run.snapshot()
    lines = messages if hello is None else [hello, *messages]
    # A sweep's report plots its points against the swept value (so far, until it ends).
    if run.config.get("kind") == "sweep":
        html = await asyncio.to_thread(sweep_report_html, run.id, lines)
    else:
        html = await asyncio.to_thread(report_html, run.id, lines, lang)
    headers = {"content-disposition": f'attachment; filename="{report_filename(run.id)}"'}
    return HTMLResponse(html, headers=headers)


class DoctorFinding(BaseModel):
    """One finding of the BN doctor (docs/doctor.md): what is wrong with one variant's
    normalization, the numbers that made it fire, and the fix."""

    variant: str
    layer: int | None = Field(description="0-based hidden layer; null for the whole network")
    code: str = Field(description="the check that fired (stable, for scripts)")
    severity: Literal["warn", "info"]
    title: str
    evidence: str
    fix: str
    numbers: dict[str, int | float | str | bool | list[int | float | None] | None] = Field(
        description="the values the evidence quotes (a non-finite one is null)"
    )


class Diagnosis(BaseModel):
    """What `covshift doctor RUN_DIR --json` prints: an empty list when nothing looks wrong."""

    run: str
    findings: list[DoctorFinding]


@router.get(
    "/api/runs/{run_id}/doctor",
    tags=["runs"],
    responses={
        **NOT_FOUND,
        409: {"model": Problem, "description": "the run has no data yet, or its hello is damaged"},
    },
)
async def doctor_run(run: RunDep, manager: Manager) -> Diagnosis:
    """The BN doctor's findings about a live or ended run: read from its frames.jsonl so far
    (or a run kept only in memory: its history), the same checks as `covshift doctor`."""
    in_memory = run.export_lines()
    lines: Iterable[str] = in_memory if in_memory is not None else manager.store.lines(run.id)
    # Off the event loop: a long run's file is read through once.
    found = await asyncio.to_thread(diagnose_lines, run.id, lines)
    findings = [DoctorFinding.model_validate(finding.to_json()) for finding in found]
    return Diagnosis(run=run.id, findings=findings)


def _chunks(file: IO[bytes], size: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The file's first `size` bytes in chunks, then closed (also when the client leaves)."""
    with file:
        left = size
        while left > 0 and (data := file.read(min(chunk, left))):
            left -= len(data)
            yield data
