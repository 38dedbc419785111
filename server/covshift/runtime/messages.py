"""The typed messages between the server and a worker process: commands in, outputs out.

Torch-free, so the server side (runtime.handle, the web layer) can use them without
importing the training core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from covshift.config import RunConfig

Action = Literal["control", "stop"]


@dataclass(frozen=True)
class SweepPlan:
    """A sweep a worker runs instead of one run: the preset it comes from, the config field
    it changes and the values it gives that field (validated), one short run each."""

    preset: str
    field: str
    values: tuple[float, ...]

    def configs(self, base: RunConfig) -> list[RunConfig]:
        """Each point's config (the values are validated already)."""
        return [base.model_copy(update={self.field: value}) for value in self.values]

    def record(self) -> dict[str, Any]:
        """What a sweep adds to its config.json and RunInfo.config: the page and the report
        tell a sweep from a run by "kind", and count its points from "sweep"."""
        return {
            "kind": "sweep",
            "preset": self.preset,
            "sweep": {"field": self.field, "values": list(self.values)},
        }


@dataclass(frozen=True)
class Job:
    """What a started worker process is to do: one run, or a sweep given its plan. With
    memory_limit_mb, the OS holds the process to that much memory from then on."""

    config_json: str
    memory_limit_mb: int | None = None
    sweep: SweepPlan | None = None


@dataclass(frozen=True)
class Status:
    """Where the trainer is: what GET /api/runs/{id} shows between frames."""

    step: int
    epoch: float | None  # None only for a watched run read back (a user loop has none)
    lr: float | None  # None only for a watched run read back (it may not say)
    batch_size: int | None
    bn_momentum: float | None


@dataclass(frozen=True)
class Command:
    """A request from the server. `changes` holds validated values: batch_size, bn_momentum,
    lr, paused, step (one training step while paused).

    `deadline` (time.monotonic, one clock for every process on the machine): a worker that
    takes the command later applies none of it, since the server has by then answered that
    the change was not made. None: no deadline (a stop is welcome whenever it arrives)."""

    id: int
    action: Action
    changes: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None


@dataclass(frozen=True)
class Reply:
    """The answer to command `id`: error is None when every change was applied.

    expired: the command was taken after its deadline and nothing was applied. stepping:
    the changes are applied and the single step they asked for has begun; the final reply
    follows once it is taken (a step of a large network can outlast any deadline)."""

    id: int
    error: str | None = None
    expired: bool = False
    stepping: bool = False


@dataclass(frozen=True)
class Output:
    """One batch from the worker. Messages are (type, JSON text) in the order produced;
    state is set when the run's state changed (with error for "failed")."""

    messages: tuple[tuple[str, str], ...] = ()
    status: Status | None = None
    state: str | None = None
    error: str | None = None
    reply: Reply | None = None
    # CLOCK_MONOTONIC is one clock for every process on the machine: latency benchmarks
    # compare it with the time a client receives the messages.
    sent_at: float = field(default_factory=time.monotonic)
