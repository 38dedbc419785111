"""FastAPI dependencies: the run manager and the run a path names, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Path
from starlette.requests import HTTPConnection

from .manager import AnyRun, RunManager


def get_manager(connection: HTTPConnection) -> RunManager:
    """The manager the lifespan created (lifespan state is copied into each request)."""
    return cast(RunManager, connection.state.manager)


Manager = Annotated[RunManager, Depends(get_manager)]

RunId = Annotated[str, Path(description="the run's id, as POST /api/runs returned it")]


def get_run(run_id: RunId, manager: Manager) -> AnyRun:
    """The run named in the path; UnknownRun (404) if there is none."""
    return manager.get(run_id)


RunDep = Annotated[AnyRun, Depends(get_run)]
