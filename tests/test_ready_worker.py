"""A worker process loaded ahead of its run (settings.ready_worker): it loads before it has a
job, the next run takes it, another is loaded after, a dead one is replaced, and none
outlives the server."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serverkit
from covshift.config import RunConfig
from covshift.runtime.handle import ReadyWorker, WorkerHandle
from covshift.runtime.messages import Job
from covshift.web import manager
from serverkit import SMALL, ThreadedServer

_deadline = serverkit.per_test_deadline(90)

Workers = Callable[[], set[int]]


@pytest.fixture
def workers() -> Iterator[Workers]:
    """The worker processes this test started that are alive now (their pids)."""

    def alive() -> set[int]:
        return {
            child.pid
            for child in multiprocessing.active_children()
            if child.name == "covshift-worker" and child.pid is not None
        }

    before = alive()
    yield lambda: alive() - before


def loaded_torch(pid: int | None) -> bool:
    with open(f"/proc/{pid}/maps", encoding="ascii") as maps:
        return "libtorch" in maps.read()


def first_hello(worker: WorkerHandle) -> dict[str, object]:
    end = time.monotonic() + 40
    while time.monotonic() < end:
        outputs = worker.read(0.1)
        assert outputs is not None, "the worker ended"
        for output in outputs:
            for kind, text in output.messages:
                if kind == "hello":
                    found: dict[str, object] = json.loads(text)
                    return found
    raise AssertionError("no hello in time")


def test_a_ready_worker_loads_before_its_job_and_runs_the_job_given_later(
    workers: Workers,
) -> None:
    ready = ReadyWorker()
    ready.prepare()
    ready.prepare()  # one at a time: still the same process
    (loaded,) = workers()
    serverkit.wait_for(lambda: serverkit.idle(loaded), timeout=40, every=0.5)
    assert loaded_torch(loaded)  # PyTorch is in the process before it knows its run
    worker = ready.take()
    try:
        assert worker.pid == loaded
        config = RunConfig.model_validate({**SMALL, "width": 12})
        worker.start(Job(config.model_dump_json()))
        hello = first_hello(worker)
        assert hello["config"]["width"] == 12  # type: ignore[index]
    finally:
        worker.close()
        worker.end(grace=0.0)
    assert workers() == set()


def test_a_ready_worker_that_died_is_replaced_when_taken(workers: Workers) -> None:
    ready = ReadyWorker()
    ready.prepare()
    (dead,) = workers()
    os.kill(dead, signal.SIGKILL)
    serverkit.wait_for(lambda: dead not in workers())
    worker = ready.take()
    try:
        assert worker.pid != dead
        worker.start(Job(RunConfig.model_validate(SMALL).model_dump_json()))
        assert first_hello(worker)["type"] == "hello"
    finally:
        worker.close()
        worker.end(grace=0.0)


def test_a_run_given_a_worker_that_died_just_now_starts_on_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: Workers
) -> None:
    def died_after_it_was_taken(self: ReadyWorker) -> WorkerHandle:
        worker = WorkerHandle()
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        worker.process.join(10)
        return worker

    monkeypatch.setattr(ReadyWorker, "take", died_after_it_was_taken)
    with ThreadedServer(serverkit.settings(tmp_path, allowed_hosts=None)) as server:
        run_id = server.create(SMALL)
        serverkit.wait_for(lambda: server.run(run_id)["state"] == "running")
        assert len(workers()) == 1


def test_closing_ends_a_ready_worker_that_never_ran(workers: Workers) -> None:
    ready = ReadyWorker()
    ready.prepare()
    (loaded,) = workers()
    serverkit.wait_for(lambda: serverkit.idle(loaded), timeout=40, every=0.5)
    (process,) = [c for c in multiprocessing.active_children() if c.pid == loaded]
    ready.close()  # its pipe closes: it reads end-of-file and exits by itself
    assert workers() == set()
    assert process.exitcode == 0
    ready.prepare()  # a server shutting down starts no more
    assert workers() == set()


def test_a_server_loads_a_worker_ahead_gives_it_to_the_next_run_and_loads_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: Workers
) -> None:
    monkeypatch.setattr(manager, "PREPARE_AFTER_S", 0.5)
    settings = serverkit.settings(tmp_path, allowed_hosts=None, ready_worker=True)
    with ThreadedServer(settings) as server:
        (loaded,) = serverkit.wait_for(workers)  # no run yet: one loaded for the first
        run_id = server.create(SMALL)
        serverkit.wait_for(lambda: server.run(run_id)["state"] == "running")
        (following,) = serverkit.wait_for(lambda: workers() - {loaded})
        server.http.delete(f"/api/runs/{run_id}").raise_for_status()
        # The run trained in the process loaded first: stopping the run ended it.
        serverkit.wait_for(lambda: loaded not in workers())
        assert workers() == {following}
    assert workers() == set()  # the server's shutdown ended the one left ready


def test_a_server_whose_demo_is_refused_still_loads_one_ahead(
    tmp_path: Path, workers: Workers
) -> None:
    settings = serverkit.settings(
        tmp_path, allowed_hosts=None, ready_worker=True, demo_run=True, max_run_memory_mb=256
    )
    with ThreadedServer(settings) as server:
        assert server.runs() == []  # the demo needs more than 256 MB
        serverkit.wait_for(lambda: len(workers()) == 1)
    assert workers() == set()


def test_without_the_setting_no_worker_waits_unused(tmp_path: Path, workers: Workers) -> None:
    with ThreadedServer(serverkit.settings(tmp_path, allowed_hosts=None)) as server:
        time.sleep(1.0)  # what a server with the setting would have started by now
        assert workers() == set()
        run_id = server.create(SMALL)
        serverkit.wait_for(lambda: server.run(run_id)["state"] == "running")
        assert len(workers()) == 1
    assert workers() == set()
