"""A run's lifecycle states and RunInfo, the record that describes a run (API and state.json)."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class RunState(str, Enum):
    """created -> running <-> paused -> finished | stopped | failed (created may fail too);
    damaged: found at start with files that could not be read."""

    CREATED = "created"  # worker process starting (importing torch, loading data)
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"  # reached config.steps
    STOPPED = "stopped"  # DELETE, server shutdown, or found active after a restart
    # The trainer raised, the worker process died, the run's frames could not be written,
    # or every variant diverged.
    FAILED = "failed"
    # Its state.json or config.json is unreadable, or a file or the folder itself is a
    # symbolic link: listed with the reason (error), never written, replayed as far as its
    # frames.jsonl reads. Never reached by a live run.
    DAMAGED = "damaged"

    @property
    def active(self) -> bool:
        """Counts against max_runs and accepts controls."""
        return self in ACTIVE

    @property
    def terminal(self) -> bool:
        """Ended for good: finished, stopped, failed or damaged."""
        return self not in ACTIVE


ACTIVE = frozenset({RunState.CREATED, RunState.RUNNING, RunState.PAUSED})

_EXAMPLE: dict[str, Any] = {
    "id": "q3Xk0cS1Fh2m9wTtZ1b7pA",
    "state": "running",
    "created": "2025-01-01T12:00:00Z",
    "ended": None,
    "config": {"dataset": "moons", "variants": ["plain", "bn"], "depth": 2, "width": 16},
    "step": 1200,
    "epoch": 45.0,
    "lr": 0.5,
    "batch_size": 60,
    "bn_momentum": 0.1,
    "error": None,
    "demo": False,
    "stored": True,
    "clients": 1,
}


class RunInfo(BaseModel):
    """What a run is and where it stands. `step` counts updates taken so far."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: str = Field(description="unguessable run id (use it in URLs)")
    state: RunState
    # Aware: a stored time without a zone cannot be ordered among the others (state.json).
    created: AwareDatetime
    ended: AwareDatetime | None = None
    config: dict[str, Any] = Field(description="the run config as validated (see POST)")
    step: int = 0
    epoch: float | None = Field(
        default=0.0, description="epochs trained (null: a watched run, whose loop has none)"
    )
    lr: float | None = Field(
        description="the learning rate now (null: a watched run that did not pass its optimizer)"
    )
    batch_size: int | None = Field(
        description="examples per batch now (null: a watched run before its first frame)"
    )
    bn_momentum: float | None
    error: str | None = Field(
        default=None,
        description="why the run failed or was stopped, if known; for a damaged run, "
        "which file is damaged and how",
    )
    demo: bool = False
    source: Literal["server", "watch"] = Field(
        default="server",
        description="who trains the run: this server's worker, or the user's own process "
        "through covshift.watch (read-only here: live controls are refused)",
    )
    stored: bool = Field(
        default=True, description="written to the log directory (exportable in full)"
    )
    clients: int = Field(default=0, description="websocket clients watching now")
