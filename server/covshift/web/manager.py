"""The run manager: the one owner of every run on this server (created in the app's lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from covshift.config import RunConfig
from covshift.errors import ConfigError
from covshift.runtime.handle import ReadyWorker, WorkerGone
from covshift.runtime.messages import SweepPlan
from covshift.settings import Settings

from .commands import RunNotActive, WorkerTimeout
from .follow import FollowedRun
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


# The next run's worker starts loading this long after a run took the ready one: the run
# just started, and the page drawing it, have the machine's cores first.
PREPARE_AFTER_S = 5.0

# How often the log directory is scanned for run folders another process created
# (`covshift.watch`): a watched run shows within this of its folder appearing.
DISCOVER_EVERY_S = 0.5

AnyRun = Run | FollowedRun


class RunManager:
    """Creates, finds, controls and stops runs; loads the stored ones at start and, while
    serving, the runs other processes start in the log directory (`covshift.watch`)."""

    def __init__(self, settings: Settings, ready: ReadyWorker | None = None) -> None:
        self.settings = settings
        self.store = RunStore(settings.logdir)
        self._runs: dict[str, AnyRun] = {}
        self._discovery: asyncio.Task[None] | None = None
        # With settings.ready_worker, a worker process loaded ahead of the next run.
        self._ready = ready or ReadyWorker()
        self._preparing: asyncio.Task[None] | None = None
        # One thread per active run's pump, plus room for launches, replays and stops.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_runs + 4, thread_name_prefix="covshift-run"
        )

    async def open(self) -> None:
        """Check the log directory, list the stored runs, start the demo run if configured."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self.store.ensure_writable)
        for info in await loop.run_in_executor(self._pool, self.store.load):
            self._add_stored(info)
        self._discovery = asyncio.create_task(self._discover(), name="covshift-discover")
        if self.settings.demo_run:
            try:
                await self.create(self.settings.demo, demo=True)
            except ConfigError as exc:  # e.g. over max_run_memory_mb: serve without it
                log.warning("the demo run was not started: %s", exc)
        if self.settings.ready_worker and self._preparing is None:  # no demo took one
            self._prepare_ready(after=0.0)

    async def close(self) -> None:
        """Stop every active run (each saves its state) and let go of the clients."""
        reason = "stopped when the server shut down"
        for task in (self._discovery, self._preparing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            loop.run_in_executor(self._pool, self._ready.close),  # nothing of it to save
            *(run.stop(reason) for run in self._runs.values()),
        )
        for run in self._runs.values():
            for client in list(run.clients):
                client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _add_stored(self, info: RunInfo) -> None:
        """A run read from the store: followed while another process writes it, else
        replayed from its files."""
        if info.source == "watch" and info.state.active:
            followed = FollowedRun(
                info,
                self._pool,
                self.store,
                self.settings.history_frames,
                self.settings.command_timeout_s,
            )
            self._runs[info.id] = followed
            followed.start()
        else:
            self._runs[info.id] = Run(info, self._pool, self.store, self.settings.history_frames)

    async def _discover(self) -> None:
        """Pick up run folders created after the start by another process. A folder this
        server creates is registered before it exists, so it is never picked up twice."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(DISCOVER_EVERY_S)
            try:
                known = set(self._runs)
                found = await loop.run_in_executor(self._pool, self.store.load_new, known)
            except Exception:  # the next scan tries again; serving goes on
                log.exception("scanning the log directory for new runs failed")
                continue
            for info in found:
                if info.id not in self._runs:
                    log.info("run %s appeared in the log directory (%s)", info.id, info.source)
                    self._add_stored(info)

    def _prepare_ready(self, after: float) -> None:
        """Load the next run's worker process `after` seconds from now, unless it is on the
        way already."""
        if self._preparing is not None and not self._preparing.done():
            return

        async def prepare() -> None:
            await asyncio.sleep(after)
            loop = asyncio.get_running_loop()
            try:
                while True:
                    taken = self._ready.taken
                    await loop.run_in_executor(self._pool, self._ready.prepare)
                    if self._ready.taken == taken:  # else a run took it as it started
                        return
            except Exception:  # e.g. no process could be started: the next run starts its own
                log.exception("a worker process could not be loaded ahead")

        self._preparing = asyncio.create_task(prepare(), name="covshift-ready-worker")

    def __iter__(self) -> Iterator[AnyRun]:
        return iter(sorted(self._runs.values(), key=lambda run: run.created))

    def active_count(self) -> int:
        return sum(run.state in ACTIVE for run in self._runs.values())

    def get(self, run_id: str) -> AnyRun:
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRun(f"no run with id {run_id!r}") from None

    async def create(
        self, config: RunConfig, *, demo: bool = False, sweep: SweepPlan | None = None
    ) -> Run:
        """Start a run (a sweep, given its plan); TooManyRuns when max_runs are already
        active, ConfigError when it (any point of a sweep) is estimated to need more than
        max_run_memory_mb."""
        points = [config] if sweep is None else sweep.configs(config)
        for point in points:
            point.check_memory(self.settings.max_run_memory_mb)
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
            sweep=sweep,
        )
        # Registered before the first await, so concurrent creates see the slot taken.
        self._runs[run_id] = run
        try:
            await run.launch(config, self._ready.take)
        except (OSError, WorkerGone) as exc:
            del self._runs[run_id]
            raise StoreError(f"the run could not start: {exc}") from None
        finally:
            if self.settings.ready_worker:
                self._prepare_ready(after=PREPARE_AFTER_S)
        kind = f"{sweep.preset} sweep" if sweep is not None else "run"
        log.info("%s %s started (%s, demo=%s)", kind, run_id, config.dataset, demo)
        return run

    async def change(self, run: AnyRun, changes: dict[str, object]) -> RunInfo:
        """Apply validated live changes; ConfigError carries the trainer's refusal."""
        if changes:
            error = await run.control(changes)
            if error is not None:
                raise ConfigError(error)
        return run.info()

    async def stop(self, run: AnyRun) -> RunInfo:
        """Stop one of this server's runs. A watched run is trained by its own process, which
        alone can stop it: RunNotActive (409) while it is active."""
        if isinstance(run, FollowedRun):
            if run.state.active:
                raise RunNotActive(
                    f"run {run.id} is trained by its own process (covshift.watch); "
                    "stop it there: leave the `with` block or call close()"
                )
            return run.info()
        await run.stop()
        return run.info()
