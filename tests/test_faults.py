"""Faults on a live server (real sockets, real worker processes): a worker killed mid-step,
a client reset mid-frame, a client that never reads, runs that diverge, a disk that fills."""

from __future__ import annotations

import asyncio
import math
import os
import resource
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import serverkit
from covshift.config import RunConfig
from covshift.runtime.worker import EVERY_VARIANT_DIVERGED
from faultkit import fill, mount_tmpfs, raw_websocket, reset, unmount
from serverkit import SMALL, ThreadedServer, is_type, receive_until, strict_json, wait_for

pytestmark = pytest.mark.slow  # a live server training real runs in worker processes

CLIENT_QUEUE = 32
# ReLU, PyTorch's default init and lr 10: the plain net's loss is NaN within ~10 steps,
# while BatchNorm keeps its variant finite.
DIVERGING = {**SMALL, "depth": 4, "width": 64, "activation": "relu", "init": "default", "lr": 10}


_deadline = serverkit.per_test_deadline(60)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str | None]]:
    """The run store, on a 64 MB tmpfs of its own where one can be mounted (so the disk can
    really fill up); with why not, where not."""
    path = tmp_path_factory.mktemp("faults") / "logs"
    why_not = mount_tmpfs(path, "64m")
    yield path, why_not
    if why_not is None:
        unmount(path)


@pytest.fixture(scope="module")
def live(logdir: tuple[Path, str | None]) -> Iterator[ThreadedServer]:
    """One server for the module; its demo run (kept in memory only) is paused until a test
    needs a run that goes on beside a failing one."""
    settings = serverkit.settings(
        logdir[0],
        allowed_hosts=None,  # a real socket: Host is 127.0.0.1
        client_queue=CLIENT_QUEUE,
        demo_run=True,
        demo=RunConfig.model_validate(SMALL),
    )
    with ThreadedServer(settings) as live:
        demo = demo_id(live)
        wait_for(lambda: live.run(demo)["state"] == "running")
        assert live.http.patch(f"/api/runs/{demo}", json={"paused": True}).status_code == 200
        yield live


def demo_id(live: ThreadedServer) -> str:
    (demo,) = [run["id"] for run in live.http.get("/api/runs").json() if run["demo"]]
    return str(demo)


def is_state(state: str) -> Any:
    return is_type("event", kind="state", state=state)


def frame_after(step: int) -> Any:
    return lambda m: m["type"] == "frame" and m["step"] > step


def healthy(live: ThreadedServer) -> bool:
    return bool(live.http.get("/healthz").json()["status"] == "ok")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """A server whose changes time out after COMMAND_TIMEOUT_S, so a frozen worker is
    waited out in seconds."""
    scratch = tmp_path_factory.mktemp("strict")
    settings = serverkit.settings(
        scratch / "logs",
        allowed_hosts=None,
        command_timeout_s=COMMAND_TIMEOUT_S,
        max_run_memory_mb=MEMORY_LIMIT_MB,
        mnist_dir=_large_idx_dataset(scratch / "mnist"),
    )
    with ThreadedServer(settings) as strict:
        yield strict


COMMAND_TIMEOUT_S = 1.0
# Room for an MNIST run by the estimate (which takes MNIST's 70,000 images), not for 30 times
# as many images.
MEMORY_LIMIT_MB = 1700


def _large_idx_dataset(folder: Path) -> Path:
    """IDX files in MNIST's layout holding 30 times MNIST's images (all zero, in sparse files:
    1.5 GB that take no disk)."""
    folder.mkdir()
    for name, shape in (
        ("train-images-idx3-ubyte", (1_800_000, 28, 28)),
        ("train-labels-idx1-ubyte", (1_800_000,)),
        ("t10k-images-idx3-ubyte", (10_000, 28, 28)),
        ("t10k-labels-idx1-ubyte", (10_000,)),
    ):
        header = bytes([0, 0, 0x08, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
        with (folder / name).open("wb") as file:
            file.write(header)
            file.truncate(len(header) + math.prod(shape))
    return folder


# ---- a worker killed mid-step ----


def test_a_worker_killed_mid_step_fails_its_run_and_keeps_its_frames(live: ThreadedServer) -> None:
    run_id = live.create(SMALL)
    with live.ws(run_id) as ws:
        receive_until(ws, frame_after(100))  # training flat out: the kill lands mid-step
        pid = live.manager.get(run_id).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        failed, _ = receive_until(ws, is_state("failed"))
    assert failed["message"] == "the worker process was killed by SIGKILL"
    info = live.run(run_id)
    assert (info["state"], info["error"]) == ("failed", failed["message"]) and info["ended"]
    assert healthy(live)

    # Kept on disk: whole lines, hello first, the frames in order, the failure last.
    wait_for(lambda: live.manager.get(run_id).history is None)  # replays come from the file
    lines = live.manager.store.frames_path(run_id).read_text().splitlines()
    records = [strict_json(line) for line in lines]
    assert records[0]["type"] == "hello" and records[-1] == failed
    steps = [r["step"] for r in records if r["type"] == "frame"]
    assert steps[0] == 0 and steps[-1] >= 100 and steps == sorted(set(steps))
    assert live.http.get(f"/api/runs/{run_id}/export").text.splitlines() == lines
    # A new tab gets it all (fewer frames than history_frames: nothing thinned).
    with live.ws(run_id) as ws:
        assert [strict_json(ws.recv(timeout=10)) for _ in records] == records

    again = live.create(SMALL)  # and the server takes new runs
    with live.ws(again) as ws:
        receive_until(ws, is_type("frame"))
    assert live.http.delete(f"/api/runs/{again}").json()["state"] == "stopped"


# ---- a worker that does not answer in time, or dies with a change pending ----


def _running(live: ThreadedServer) -> tuple[str, int]:
    run_id = live.create(SMALL)
    wait_for(lambda: live.run(run_id)["state"] == "running")
    pid = live.manager.get(run_id).pid
    assert pid is not None
    return run_id, pid


def test_a_change_the_worker_takes_too_late_is_504_and_never_applied(
    strict: ThreadedServer,
) -> None:
    run_id, pid = _running(strict)
    os.kill(pid, signal.SIGSTOP)  # as a step far longer than the timeout would hold it
    try:
        sent = time.monotonic()
        late = strict.http.patch(f"/api/runs/{run_id}", json={"lr": 0.0777})
        waited = time.monotonic() - sent
    finally:
        os.kill(pid, signal.SIGCONT)
    assert late.status_code == 504
    assert "the change was not applied" in late.json()["detail"]
    assert COMMAND_TIMEOUT_S <= waited < COMMAND_TIMEOUT_S + 5
    # The worker reads the change once it runs again, and refuses it: it is past its deadline.
    step = strict.run(run_id)["step"]
    wait_for(lambda: strict.run(run_id)["step"] > step + 200)
    assert strict.run(run_id)["lr"] == 0.5
    records = [strict_json(line) for line in strict.manager.store.lines(run_id)]
    assert not [r for r in records if r.get("kind") == "lr"]  # no event stored
    assert {r["lr"] for r in records if r["type"] == "frame"} == {0.5}
    # And the next change, taken in time, is applied and acknowledged.
    changed = strict.http.patch(f"/api/runs/{run_id}", json={"lr": 0.0777})
    assert changed.status_code == 200 and changed.json()["lr"] == 0.0777
    strict.http.delete(f"/api/runs/{run_id}")


def test_a_flood_of_changes_to_a_frozen_worker_is_refused_past_a_cap_and_the_server_answers(
    strict: ThreadedServer,
) -> None:
    # Each change goes down the worker's pipe from the event loop; a worker in a long step
    # reads none. Past MAX_PENDING waiting changes, more are refused (429), not written, so
    # the pipe never fills and the server keeps answering everyone else.
    from covshift.web.commands import MAX_PENDING

    run_id, pid = _running(strict)
    run = strict.manager.get(run_id)
    os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(MAX_PENDING) as pool:
            waiting = [
                pool.submit(strict.http.patch, f"/api/runs/{run_id}", json={"lr": 0.01 + i / 1e4})
                for i in range(MAX_PENDING)
            ]
            wait_for(lambda: run.commands_pending == MAX_PENDING, timeout=20)
            refused = strict.http.patch(f"/api/runs/{run_id}", json={"lr": 0.9})
            assert refused.status_code == 429
            assert f"{MAX_PENDING} changes waiting" in refused.json()["detail"]
            assert healthy(strict)
            assert all(f.result(timeout=30).status_code == 504 for f in waiting)
    finally:
        os.kill(pid, signal.SIGCONT)
    strict.http.delete(f"/api/runs/{run_id}")


def test_a_change_pending_when_the_worker_dies_is_409(strict: ThreadedServer) -> None:
    run_id, pid = _running(strict)
    run = strict.manager.get(run_id)
    os.kill(pid, signal.SIGSTOP)  # the change waits for an answer ...
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(strict.http.patch, f"/api/runs/{run_id}", json={"lr": 0.0777})
        wait_for(lambda: run.commands_pending)
        os.kill(pid, signal.SIGKILL)  # ... that never comes
        answer = pending.result(timeout=10)
    assert answer.status_code == 409
    detail = answer.json()["detail"]
    assert detail == f"run {run_id} is failed; the change was not made"
    assert strict.run(run_id)["state"] == "failed" and healthy(strict)


def test_a_worker_over_its_memory_limit_fails_saying_so_and_the_others_go_on(
    strict: ThreadedServer,
) -> None:
    other, _ = _running(strict)
    run_id = strict.create({**SMALL, "dataset": "mnist"})  # its images are 1.4 GB as bytes
    failed = wait_for(lambda: (r := strict.run(run_id))["state"] == "failed" and r, timeout=30)
    assert failed["error"].startswith(
        f"out of memory: the run needed more than the {MEMORY_LIMIT_MB} MB one run may use"
    )
    assert healthy(strict)
    step = strict.run(other)["step"]
    wait_for(lambda: strict.run(other)["step"] > step + 50)  # the other run trains on
    strict.http.delete(f"/api/runs/{other}")


# ---- clients that vanish or never read ----


async def _task_count() -> int:
    return len(asyncio.all_tasks())


def test_clients_reset_mid_frame_leave_the_run_and_the_other_clients_alone(
    live: ThreadedServer,
) -> None:
    run_id = live.create({**SMALL, "probe_every": 1})  # a frame every step: always mid-stream
    run = live.manager.get(run_id)
    with live.ws(run_id) as watcher:
        receive_until(watcher, is_type("frame"))
        tasks = live.call(_task_count)
        for _ in range(5):
            sock = raw_websocket(live.port, f"/ws/runs/{run_id}")
            assert sock.recv(1000)  # part of the hello; the rest and live frames are in flight
            wait_for(lambda: len(run.clients) == 2)
            time.sleep(0.1)
            reset(sock)
            wait_for(lambda: len(run.clients) == 1)  # its queue let go at once
        assert live.run(run_id)["clients"] == 1
        wait_for(lambda: live.call(_task_count) == tasks)  # no sender task left behind
        step = live.run(run_id)["step"]
        receive_until(watcher, frame_after(step + 50))  # the other client streams on
    assert live.run(run_id)["state"] == "running" and healthy(live)
    live.http.delete(f"/api/runs/{run_id}")


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_client_that_never_reads_skips_frames_and_nobody_waits_for_it(
    live: ThreadedServer,
) -> None:
    run_id = live.create({**SMALL, "probe_every": 1, "bins": 128})  # ~1 MB/s of frames
    run = live.manager.get(run_id)
    frozen = raw_websocket(live.port, f"/ws/runs/{run_id}", receive_buffer=4096)
    try:
        (queue,) = wait_for(lambda: list(run.clients))
        with live.ws(run_id) as reader:
            # Once the socket's buffers are full its queue fills, then sheds its oldest frames.
            wait_for(lambda: queue.dropped > 0, timeout=30)
            dropped, memory = queue.dropped, _rss_mb()
            step = live.run(run_id)["step"]
            receive_until(reader, frame_after(step + 300))  # the reader keeps up, live
            assert len(queue) <= CLIENT_QUEUE
            assert queue.dropped > dropped  # still shedding: the worker and server never wait
            assert _rss_mb() - memory < 50  # bounded: no backlog grows anywhere
            info = live.run(run_id)
            assert (info["state"], info["clients"]) == ("running", 2)
    finally:
        reset(frozen)
    wait_for(lambda: not run.clients)
    live.http.delete(f"/api/runs/{run_id}")


# ---- divergence ----


def _pointer(record: dict[str, Any], pointer: str) -> Any:
    value: Any = record
    for part in pointer.split("/")[1:]:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_a_diverging_variant_is_flagged_in_json_safe_frames_and_the_others_train_on(
    live: ThreadedServer,
) -> None:
    run_id = live.create({**DIVERGING, "variants": ["plain", "bn"]})
    with live.ws(run_id) as ws:  # receive_until refuses a bare NaN or Infinity
        event, before = receive_until(ws, is_type("event", kind="diverged"))
        assert event["variant"] == "plain" and "non-finite" in event["reason"]
        flagged = [m for m in before if m["type"] == "frame"][-1]  # the frame that found it
        plain = flagged["variants"]["plain"]
        assert (plain["status"], plain["diverged_at"]) == ("diverged", event["step"])
        assert plain["loss"] is None
        assert flagged["nonfinite"]["/variants/plain/loss"] in ("nan", "inf", "-inf")
        assert all(_pointer(flagged, p) is None for p in flagged["nonfinite"])
        later, _ = receive_until(ws, frame_after(flagged["step"] + 50))
        assert later["variants"]["plain"] == {"status": "diverged", "diverged_at": event["step"]}
        bn = later["variants"]["bn"]
        assert bn["status"] == "training" and math.isfinite(bn["loss"])
        assert "nonfinite" not in later
    assert live.run(run_id)["state"] == "running" and healthy(live)
    live.http.delete(f"/api/runs/{run_id}")


def test_a_run_whose_every_variant_diverged_ends_failed_and_says_why(live: ThreadedServer) -> None:
    run_id = live.create({**DIVERGING, "variants": ["plain"]})
    with live.ws(run_id) as ws:
        receive_until(ws, is_type("event", kind="diverged", variant="plain"))
        failed, _ = receive_until(ws, is_state("failed"))
    assert failed["message"] == EVERY_VARIANT_DIVERGED
    info = live.run(run_id)
    assert (info["state"], info["error"]) == ("failed", EVERY_VARIANT_DIVERGED)
    assert info["step"] < 100  # it ended at once, not after its 10 million steps
    assert healthy(live)


# ---- a full disk ----


def test_a_full_disk_fails_the_run_it_stops_storing_and_the_server_goes_on(
    live: ThreadedServer, logdir: tuple[Path, str | None]
) -> None:
    root, why_not = logdir
    if why_not is not None:
        pytest.skip(f"needs a tmpfs to fill: {why_not}")
    run_id = live.create(SMALL)
    pid = live.manager.get(run_id).pid
    demo = demo_id(live)  # kept in memory only: it has no disk to lose
    with live.ws(run_id) as ws:
        seen, earlier = receive_until(ws, frame_after(50))
        live.http.patch(f"/api/runs/{demo}", json={"paused": False})
        filler = fill(root)
        try:
            failed, before = receive_until(ws, is_state("failed"))
            assert failed["message"] == (
                "the run's frames could not be written (No space left on device); "
                "it was stopped, the frames written before are kept"
            )
            info = live.run(run_id)
            assert (info["state"], info["error"]) == ("failed", failed["message"])
            assert healthy(live)
            step = live.run(demo)["step"]
            wait_for(lambda: live.run(demo)["step"] > step + 100)  # the other run goes on
            assert pid is not None
            wait_for(lambda: not os.path.exists(f"/proc/{pid}"))  # its worker was stopped

            # What reached the disk is readable; what did not is still in memory for new tabs.
            stored = [strict_json(line) for line in live.manager.store.lines(run_id)]
            assert stored[0]["type"] == "hello"
            on_disk = [r["step"] for r in stored if r["type"] == "frame"]
            streamed = [m["step"] for m in [*earlier, seen, *before] if m["type"] == "frame"]
            assert on_disk[0] == 0 and on_disk == streamed[: len(on_disk)]
            assert not list(live.manager.store.folder(run_id).glob(".state-*"))
            with live.ws(run_id) as ws2:
                assert strict_json(ws2.recv(timeout=10))["type"] == "hello"
                assert receive_until(ws2, is_state("failed"))[0] == failed
        finally:
            filler.unlink()
            live.http.patch(f"/api/runs/{demo}", json={"paused": True})
