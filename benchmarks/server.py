"""Live server: worker-to-client frame latency, and training speed while clients watch.

The server runs in its own process (as `covshift serve` would), the clients in this
one. The worker stamps each batch it sends with CLOCK_MONOTONIC, one clock for every
process on the machine; the server process records those stamps per frame step, and
each client records when the frame arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import websockets

from . import own_process

RUN = {"dataset": "digits", "steps": 10_000_000}
# New clients first replay the run's history; latency counts once all are live.
CATCH_UP_LIMIT_S = 60.0
FRAME_PREFIX = '{"v":2,"type":"frame","step":'


def _serve(port: int, stamps: str | None, logdir: str, ready_worker: bool) -> None:
    """Server process: the real app, with the worker's send time of each frame recorded
    (when `stamps` names a file)."""
    import uvicorn
    from covshift.settings import Settings
    from covshift.web.app import create_app

    if stamps is not None:
        _record_send_times(stamps)
    settings = Settings(
        logdir=Path(logdir),
        demo_run=False,
        open_browser=False,
        port=port,
        ready_worker=ready_worker,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    server.run()


def _record_send_times(stamps: str) -> None:
    from covshift.web import run as run_module

    log = Path(stamps).open("a", encoding="utf-8")  # noqa: SIM115 (open for the process)
    apply = run_module.Run._apply

    def recording(self: Any, outputs: list[Any]) -> None:
        # uvicorn re-raises SIGTERM after shutting down, so write each stamp as it comes.
        for output in outputs:
            for kind, text in output.messages:
                if kind == "frame":
                    log.write(f"{json.loads(text)['step']} {output.sent_at}\n")
        log.flush()
        apply(self, outputs)

    run_module.Run._apply = recording  # type: ignore[method-assign]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process(
    scratch: str, stamps: str | None = None, ready_worker: bool = False
) -> Iterator[tuple[str, int]]:
    """The server in its own process (as `covshift serve` would run it), its run store in
    scratch; yields its base URL and process id once /healthz answers. Without a worker
    loaded ahead unless asked: its loading, 5 s after a run starts, would fall in the
    measurements."""
    port = _free_port()
    server = mp.get_context("spawn").Process(
        target=_serve, args=(port, stamps, scratch, ready_worker)
    )
    server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base, server.pid or 0
    finally:
        server.terminate()
        server.join(15)


async def start_run(http: httpx.AsyncClient, base: str) -> str:
    """Create a run of RUN and wait until it trains; its id."""
    run_id: str = (await http.post(f"{base}/api/runs", json=RUN)).json()["id"]
    while (await http.get(f"{base}/api/runs/{run_id}")).json()["state"] != "running":
        await asyncio.sleep(0.1)
    return run_id


# The view a page opens a run with (docs/protocol.md): frames projected to it.
PAGE_VIEW = "?tap=act_input&channel=0"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _watch(
    base: str, run_id: str, clients: int, seconds: float, all_live: asyncio.Event, view: str
) -> list[tuple[int, float, int]]:
    """Connect clients (with this view query, "" for whole frames); once every one has
    replayed the history and reached live frames, record (step, arrival, bytes) of each live
    frame for `seconds`."""
    received: list[tuple[int, float, int]] = []
    async with httpx.AsyncClient() as http:
        replayed_up_to = (await http.get(f"{base}/api/runs/{run_id}")).json()["step"]
    live = 0
    hard_stop = time.monotonic() + seconds + CATCH_UP_LIMIT_S

    async def one() -> None:
        nonlocal live
        url = base.replace("http", "ws", 1) + f"/ws/runs/{run_id}{view}"
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            caught_up = False
            end = hard_stop
            while time.monotonic() < end:
                text = await ws.recv()
                now = time.monotonic()
                if not (isinstance(text, str) and text.startswith(FRAME_PREFIX)):
                    continue
                # the step is the first field: no need to parse the whole frame
                step = int(text[len(FRAME_PREFIX) : text.index(",", len(FRAME_PREFIX))])
                if not caught_up and step > replayed_up_to:
                    caught_up = True
                    live += 1
                    if live == clients:
                        all_live.set()
                if all_live.is_set():
                    end = min(end, measuring_until)
                    received.append((step, now, len(text.encode())))

    measuring_until = hard_stop

    async def start_clock() -> None:
        nonlocal measuring_until
        await all_live.wait()
        measuring_until = time.monotonic() + seconds

    clock = asyncio.create_task(start_clock())
    await asyncio.gather(*(one() for _ in range(clients)))
    clock.cancel()
    return received


async def _steps_per_s(http: httpx.AsyncClient, base: str, run_id: str, seconds: float) -> float:
    first = (await http.get(f"{base}/api/runs/{run_id}")).json()["step"]
    started = time.monotonic()
    await asyncio.sleep(seconds)
    last = (await http.get(f"{base}/api/runs/{run_id}")).json()["step"]
    return float((last - first) / (time.monotonic() - started))


async def _measure(
    base: str, pid: int, phases: list[tuple[str, int, str]], seconds: float
) -> dict[str, Any]:
    """Steps/s and the server's CPU unwatched, then for each phase (name, clients, view)."""
    async with httpx.AsyncClient(timeout=30) as http:
        run_id = await start_run(http, base)
        await asyncio.sleep(2)  # warm-up
        cpu = _cpu_seconds(pid)
        results: dict[str, Any] = {
            "steps_per_s_unwatched": await _steps_per_s(http, base, run_id, seconds)
        }
        idle_cpu = (_cpu_seconds(pid) - cpu) / seconds
        arrivals: dict[str, list[tuple[int, float, int]]] = {}
        for name, n, view in phases:
            all_live = asyncio.Event()
            watching = asyncio.create_task(_watch(base, run_id, n, seconds, all_live, view))
            await asyncio.wait_for(all_live.wait(), CATCH_UP_LIMIT_S)
            cpu = _cpu_seconds(pid)
            results[f"steps_per_s_{name}"] = await _steps_per_s(http, base, run_id, seconds)
            # The server process's CPU for these viewers, over what it spends with none.
            watched_cpu = (_cpu_seconds(pid) - cpu) / seconds
            results[f"server_cpu_ms_per_s_per_viewer_{name}"] = (watched_cpu - idle_cpu) / n * 1e3
            arrivals[name] = await watching
            steps = [step for step, _, _ in arrivals[name]]
            span = max(steps) - min(steps) if steps else 0
            if span:
                sent = sum(size for _, _, size in arrivals[name]) / n
                rate = results[f"steps_per_s_{name}"]
                results[f"bytes_per_s_per_viewer_{name}"] = sent / span * rate
                results[f"bytes_per_frame_{name}"] = sent / (len(steps) / n)
        await http.delete(f"{base}/api/runs/{run_id}")
    results["_arrivals"] = arrivals
    return results


async def _run_start_s(base: str, pid: int) -> float:
    """Seconds from creating a run to its first frame on a websocket, once the server's
    worker processes have loaded (none, or the one loaded ahead)."""
    await _settle(pid)
    async with httpx.AsyncClient(timeout=30) as http:
        started = time.monotonic()
        run_id = (await http.post(f"{base}/api/runs", json=RUN)).json()["id"]
        url = base.replace("http", "ws", 1) + f"/ws/runs/{run_id}{PAGE_VIEW}"
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            while not str(await ws.recv()).startswith(FRAME_PREFIX):
                pass
        seconds = time.monotonic() - started
        await http.delete(f"{base}/api/runs/{run_id}")
    return seconds


async def _settle(pid: int, limit_s: float = 30.0) -> None:
    """Wait until the server and its children have used no CPU for half a second."""
    end = time.monotonic() + limit_s
    before = _tree_cpu_seconds(pid)
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        now = _tree_cpu_seconds(pid)
        if now - before < 0.05:
            return
        before = now


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (whichever of its threads started them)."""
    total = _cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # ended meanwhile
            for child in (task / "children").read_text().split():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    total += _cpu_seconds(int(child))
    return total


def _headless_steps_per_s(seconds: float) -> float:
    """The same run config trained with no server at all, one torch thread like the worker."""
    import torch
    from covshift.config import RunConfig
    from covshift.train.trainer import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(RunConfig.model_validate(RUN))
    for _ in range(100):
        trainer.train_step()
    steps, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        trainer.train_step()
        steps += 1
    return steps / (time.monotonic() - started)


def run_server_benchmark(quick: bool) -> dict[str, float]:
    seconds = 4.0 if quick else 10.0
    # Pages (each with its view, as the page opens a run), then 50 scripts taking whole
    # frames: what every viewer got before frames were projected.
    phases = [
        ("1_clients", 1, PAGE_VIEW),
        ("50_clients", 50, PAGE_VIEW),
        ("50_clients_whole_frames", 50, ""),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        stamps = os.path.join(scratch, "stamps.json")
        with server_process(scratch, stamps) as (base, pid):
            measured = asyncio.run(_measure(base, pid, phases, seconds))
        lines = Path(stamps).read_text().split()
        sent = {int(step): float(at) for step, at in zip(lines[::2], lines[1::2], strict=True)}
    figures: dict[str, float] = {k: v for k, v in measured.items() if not k.startswith("_")}
    # A new run's wait, with a worker process started for it and with one loaded ahead.
    for ready, name in ((False, "run_start_s_new_worker"), (True, "run_start_s_ready_worker")):
        with (
            tempfile.TemporaryDirectory() as scratch,
            server_process(scratch, ready_worker=ready) as (base, pid),
        ):
            figures[name] = asyncio.run(_run_start_s(base, pid))
    for name, arrivals in measured["_arrivals"].items():
        latencies = sorted(at - sent[step] for step, at, _ in arrivals if step in sent)
        figures[f"latency_p50_ms_{name}"] = statistics.median(latencies) * 1e3
        figures[f"latency_p95_ms_{name}"] = latencies[int(0.95 * (len(latencies) - 1))] * 1e3
    # in a process set up as the server's workers are (NumPy's kernels, one torch thread)
    figures["steps_per_s_headless"] = own_process.call(_headless_steps_per_s, seconds)
    figures["watched_50_over_headless"] = (
        figures["steps_per_s_50_clients"] / figures["steps_per_s_headless"]
    )
    figures["watched_50_over_unwatched"] = (
        figures["steps_per_s_50_clients"] / figures["steps_per_s_unwatched"]
    )
    return figures
