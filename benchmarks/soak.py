"""Soak: server memory and the clients' send queues over a long watch (`--soak MINUTES`).

One run trains at the default config in a server process while FAST_CLIENTS clients
read everything and one reads a message every SLOW_READ_S, fewer than the run sends,
so its queue fills and drops frames. Each sample reads the server's RSS from /proc and
the queues from GET /api/stats. Growth counts from the end of the warm-up, in which the
run's history (history_frames) and the slow client's queue (client_queue) fill up by
design; after it, both are bounded and nothing should grow.

The slow client falls behind by megabytes of socket buffers before its queue on the
server fills, and the server's keepalive ping waits behind them: once they take more
than 20 s to drain, uvicorn closes the connection. It then reconnects, as the page
does; its reconnects are counted, the fast clients must never be closed.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets

from .server import server_process, start_run

FAST_CLIENTS = 10
# 5 messages/s: behind the default config's 10-20 frames/s on any machine we run on.
SLOW_READ_S = 0.2
SAMPLES = 60
# Enough for the history to fill (500 frames at ~17/s).
MIN_WARMUP_S = 45.0


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the clients connected
    rss_mb: float  # the server process only (each worker is its own process)
    clients: int
    queued: tuple[int, ...]  # messages waiting per client, largest first
    dropped: int


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def warmup_s(samples: list[Sample], seconds: float) -> float:
    """The warm-up ends once the history has filled (MIN_WARMUP_S) and the slow client's
    queue has too (its first dropped frame), or at half the soak, whichever comes first."""
    for sample in samples:
        if sample.seconds >= MIN_WARMUP_S and sample.dropped > 0:
            return min(sample.seconds, seconds / 2)
    return seconds / 2


async def _read(url: str, pause: float, closed: list[str]) -> None:
    """Read everything (pause 0) or a message per `pause` seconds, reconnecting after a
    close as the page does; each close is recorded."""
    while True:
        try:
            async with websockets.connect(
                url, max_size=None, compression=None, ping_interval=None
            ) as ws:
                async for _ in ws:
                    if pause:
                        await asyncio.sleep(pause)
            closed.append("closed by the server")
        except (OSError, websockets.ConnectionClosed) as exc:
            closed.append(repr(exc))
        await asyncio.sleep(0.25)


async def _soak(
    base: str, pid: int, seconds: float
) -> tuple[list[Sample], list[str], list[str], int]:
    async with httpx.AsyncClient(timeout=30) as http:
        run_id = await start_run(http, base)
        url = base.replace("http", "ws", 1) + f"/ws/runs/{run_id}"
        fast_closed: list[str] = []
        slow_closed: list[str] = []
        readers = [asyncio.create_task(_read(url, 0.0, fast_closed)) for _ in range(FAST_CLIENTS)]
        readers.append(asyncio.create_task(_read(url, SLOW_READ_S, slow_closed)))
        started = time.monotonic()
        samples: list[Sample] = []
        for index in range(SAMPLES + 1):
            await asyncio.sleep(max(0.0, started + index * seconds / SAMPLES - time.monotonic()))
            stats = (await http.get(f"{base}/api/stats")).json()
            samples.append(
                Sample(
                    time.monotonic() - started,
                    rss_mb(pid),
                    stats["clients"],
                    tuple(stats["queued"]),
                    stats["dropped"],
                )
            )
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await http.delete(f"{base}/api/runs/{run_id}")
    return samples, fast_closed, slow_closed, stats["queue_limit"]


def figures(samples: list[Sample], seconds: float, queue_limit: int) -> dict[str, float]:
    """Growth after the warm-up: RSS (largest against the first), and the messages queued
    over all clients (mean of the second half against the first), as a share of their room."""
    warmup = warmup_s(samples, seconds)
    measured = [sample for sample in samples if sample.seconds >= warmup]
    first = measured[0]
    rss_max = max(sample.rss_mb for sample in measured)
    half = len(measured) // 2
    queued_start = statistics.mean(sum(sample.queued) for sample in measured[:half] or measured)
    queued_end = statistics.mean(sum(sample.queued) for sample in measured[half:])
    room = max(1, max(sample.clients for sample in measured) * queue_limit)
    return {
        "minutes": seconds / 60,
        "warmup_s": warmup,
        "clients_min": min(sample.clients for sample in measured),
        "rss_mb_after_warmup": first.rss_mb,
        "rss_mb_end": measured[-1].rss_mb,
        "rss_mb_max": rss_max,
        "rss_growth": rss_max / first.rss_mb - 1,
        "queue_limit": queue_limit,
        "queued_max": max(max(sample.queued, default=0) for sample in measured),
        "queued_total_first_half": queued_start,
        "queued_total_second_half": queued_end,
        "queue_growth": (queued_end - queued_start) / room,
        # /api/stats counts the clients connected now: a reconnect starts again from 0
        "dropped": sum(max(0, b.dropped - a.dropped) for a, b in itertools.pairwise(measured)),
    }


def run_soak(minutes: float) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The soak's figures, and every sample (for the JSON file)."""
    seconds = minutes * 60
    with tempfile.TemporaryDirectory() as scratch, server_process(scratch) as (base, pid):
        samples, fast_closed, slow_closed, queue_limit = asyncio.run(_soak(base, pid, seconds))
    result = figures(samples, seconds, queue_limit)
    result["fast_client_disconnects"] = len(fast_closed)
    result["slow_client_reconnects"] = len(slow_closed)
    return result, [asdict(sample) for sample in samples]
