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

RUN = {"dataset": "digits", "steps": 10_000_000}
# New clients first replay the run's history; latency counts once all are live.
CATCH_UP_LIMIT_S = 60.0
FRAME_PREFIX = '{"v":1,"type":"frame","step":'


def _serve(port: int, stamps: str | None, logdir: str) -> None:
    """Server process: the real app, with the worker's send time of each frame recorded
    (when `stamps` names a file)."""
    import uvicorn
    from covshift.settings import Settings
    from covshift.web.app import create_app

    if stamps is not None:
        _record_send_times(stamps)
    settings = Settings(logdir=Path(logdir), demo_run=False, open_browser=False, port=port)
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
def server_process(scratch: str, stamps: str | None = None) -> Iterator[tuple[str, int]]:
    """The server in its own process (as `covshift serve` would run it), its run store in
    scratch; yields its base URL and process id once /healthz answers."""
    port = _free_port()
    server = mp.get_context("spawn").Process(target=_serve, args=(port, stamps, scratch))
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


async def _watch(
    base: str, run_id: str, clients: int, seconds: float, all_live: asyncio.Event
) -> list[tuple[int, float]]:
    """Connect clients; once every one has replayed the history and reached live frames,
    record (step, arrival) of each live frame for `seconds`."""
    received: list[tuple[int, float]] = []
    async with httpx.AsyncClient() as http:
        replayed_up_to = (await http.get(f"{base}/api/runs/{run_id}")).json()["step"]
    live = 0
    hard_stop = time.monotonic() + seconds + CATCH_UP_LIMIT_S

    async def one() -> None:
        nonlocal live
        url = base.replace("http", "ws", 1) + f"/ws/runs/{run_id}"
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
                    received.append((step, now))

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


async def _measure(base: str, clients: list[int], seconds: float) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        run_id = await start_run(http, base)
        await asyncio.sleep(2)  # warm-up
        results: dict[str, Any] = {
            "steps_per_s_unwatched": await _steps_per_s(http, base, run_id, seconds)
        }
        arrivals: dict[int, list[tuple[int, float]]] = {}
        for n in clients:
            all_live = asyncio.Event()
            watching = asyncio.create_task(_watch(base, run_id, n, seconds, all_live))
            await asyncio.wait_for(all_live.wait(), CATCH_UP_LIMIT_S)
            results[f"steps_per_s_{n}_clients"] = await _steps_per_s(http, base, run_id, seconds)
            arrivals[n] = await watching
        await http.delete(f"{base}/api/runs/{run_id}")
    results["_arrivals"] = arrivals
    return results


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
    clients = [1, 50]
    with tempfile.TemporaryDirectory() as scratch:
        stamps = os.path.join(scratch, "stamps.json")
        with server_process(scratch, stamps) as (base, _):
            measured = asyncio.run(_measure(base, clients, seconds))
        lines = Path(stamps).read_text().split()
        sent = {int(step): float(at) for step, at in zip(lines[::2], lines[1::2], strict=True)}
    figures: dict[str, float] = {k: v for k, v in measured.items() if not k.startswith("_")}
    for n, arrivals in measured["_arrivals"].items():
        latencies = sorted(at - sent[step] for step, at in arrivals if step in sent)
        figures[f"latency_p50_ms_{n}_clients"] = statistics.median(latencies) * 1e3
        figures[f"latency_p95_ms_{n}_clients"] = latencies[int(0.95 * (len(latencies) - 1))] * 1e3
    figures["steps_per_s_headless"] = _headless_steps_per_s(seconds)
    figures["watched_50_over_headless"] = (
        figures["steps_per_s_50_clients"] / figures["steps_per_s_headless"]
    )
    figures["watched_50_over_unwatched"] = (
        figures["steps_per_s_50_clients"] / figures["steps_per_s_unwatched"]
    )
    return figures
