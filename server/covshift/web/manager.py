"""The run manager: the one owner of every run on this server (created in the app's lifespan)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from covshift.config import RunConfig
from covshift.errors import ConfigError
from covshift.settings import Settings

from .commands import RunNotActive, WorkerTimeout
from .lifecycle import ACTIVE, RunInfo, RunState
from .run import Run
from .store import RunStore, StoreError

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVE",
    "RunManager",
    "RunNotActive",
    "RunState",
    "TooManyRuns",
    "UnknownRun",
    "WorkerTimeout",
]


class UnknownRun(LookupError):
    """No run has this id."""


class TooManyRuns(Exception):
    """max_runs runs are already active."""


class RunManager:
    """Creates, finds, controls and stops runs; loads the stored ones at start."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = RunStore(settings.logdir)
        self._runs: dict[str, Run] = {}
        # One thread per active run's pump, plus room for launches, replays and stops.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_runs + 4, thread_name_prefix="covshift-run"
        )

    async def open(self) -> None:
        """Check the log directory, list the stored runs, start the demo run if configured."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self.store.ensure_writable)
        for info in await loop.run_in_executor(self._pool, self.store.load):
            self._runs[info.id] = Run(info, self._pool, self.store, self.settings.history_frames)
        if self.settings.demo_run:
            try:
                await self.create(self.settings.demo, demo=True)
            except ConfigError as exc:  # e.g. over max_run_memory_mb: serve without it
                log.warning("the demo run was not started: %s", exc)

    async def close(self) -> None:
        """Stop every active run (each saves its state) and let go of the clients."""
        reason = "stopped when the server shut down"
        await asyncio.gather(*(run.stop(reason) for run in self._runs.values()))
        for run in self._runs.values():
            for client in list(run.clients):
                client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __iter__(self) -> Iterator[Run]:
        return iter(sorted(self._runs.values(), key=lambda run: run.created))

    def active_count(self) -> int:
        return sum(run.state in ACTIVE for run in self._runs.values())

    def get(self, run_id: str) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRun(f"no run with id {run_id!r}") from None

    async def create(self, config: RunConfig, *, demo: bool = False) -> Run:
        """Start a run; TooManyRuns when max_runs are already active, ConfigError when it is
        estimated to need more than max_run_memory_mb."""
        config.check_memory(self.settings.max_run_memory_mb)
        limit = self.settings.max_runs
        if self.active_count() >= limit:
            raise TooManyRuns(
                f"too many active runs: the limit is {limit} (max_runs); "
                "stop one (DELETE /api/runs/{id}) or wait for one to finish"
            )
        run_id = secrets.token_urlsafe(16)  # 128 random bits: the id is the capability
        stored = not demo or self.settings.demo_store
        run = Run.new(
            run_id,
            config,
            self._pool,
            self.store,
            self.settings.history_frames,
            demo=demo,
            stored=stored,
            command_timeout=self.settings.command_timeout_s,
            memory_limit_mb=self.settings.max_run_memory_mb,
        )
        # Registered before the first await, so concurrent creates see the slot taken.
        self._runs[run_id] = run
        try:
            await run.launch(config)
        except OSError as exc:
            del self._runs[run_id]
            raise StoreError(f"the run could not start: {exc}") from None
        log.info("run %s started (%s, demo=%s)", run_id, config.dataset, demo)
        return run

    async def change(self, run: Run, changes: dict[str, object]) -> RunInfo:
        """Apply validated live changes; ConfigError carries the trainer's refusal."""
        if changes:
            error = await run.control(changes)
            if error is not None:
                raise ConfigError(error)
        return run.info()

    async def stop(self, run: Run) -> RunInfo:
        await run.stop()
        return run.info()
