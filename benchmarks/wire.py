"""The wire: bytes of a live frame and of a 500-frame join, and what encoding them costs.

Sizes are the run's own (deterministic for a seed), so they are measured without a server:
frames of the default run (RunConfig()), probed every 10th step so 500 frames take seconds
rather than minutes (the layout, and so the size, of a frame does not depend on the
cadence). Each figure names what a client gets:

- `whole_frame_bytes`: a frame as written to frames.jsonl and sent to a client without a
  view (schema version 2's compact taps);
- `page_frame_bytes`: the same frame projected to the page's view (one tap's histograms,
  one channel of BN's statistics): what a page receives live;
- `join_bytes`: the one compressed history message a page joins with, 500 frames and their
  events; `join_whole_text_bytes`: the same messages sent one by one as text, whole;
- `join_build_ms`: the server's CPU to build that message (parse, project, encode, gzip);
- `encode_ms` against `json_encode_ms`: one frame encoded as the worker does (orjson, compact
  taps) and by the standard library;
- `deflated_page_frame_bytes` and `deflate_ms`: a page frame through permessage-deflate
  (raw deflate, a fresh context per message, as `ws_compression` would send it): the bytes
  it would save against the CPU the server would spend on it for every viewer.
"""

from __future__ import annotations

import json
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

from covshift.config import RunConfig
from covshift.train.trainer import Trainer
from covshift.web.projection import View, history_message, projections
from covshift.wire import encode

FRAMES = 500
PAGE = View("act_input", 0)


def run_wire_benchmark(quick: bool) -> dict[str, float]:
    trainer = Trainer(RunConfig(steps=10 * FRAMES, probe_every=10))
    trainer.hello()
    records = []
    while not trainer.done:
        records += trainer.train_step()
    frames = [r for r in records if r["type"] == "frame"][:FRAMES]
    texts = [encode(r) for r in records]
    frame_texts = [encode(f) for f in frames]
    page = [projections(text, {PAGE})[PAGE] for text in frame_texts]

    repeats = 3 if quick else 10
    builds = []
    for _ in range(repeats):
        started = time.perf_counter()
        joined = history_message(texts, PAGE)
        builds.append(time.perf_counter() - started)
    sample = frames[-20:]
    encode_s = _per_call(lambda: [encode(f) for f in sample]) / len(sample)
    json_s = _per_call(
        lambda: [json.dumps(f, allow_nan=False, separators=(",", ":")) for f in sample]
    ) / len(sample)
    raw = [text.encode() for text in page[-50:]]
    deflate_s = _per_call(lambda: [_deflate(data) for data in raw]) / len(raw)
    return {
        "frames": float(len(frames)),
        "whole_frame_bytes": _mean_bytes(frame_texts),
        "page_frame_bytes": _mean_bytes(page),
        "page_frame_bytes_max": float(max(len(text.encode()) for text in page)),
        "join_bytes": float(len(joined)),
        "join_whole_text_bytes": float(sum(len(text.encode()) for text in texts)),
        "join_build_ms": statistics.median(builds) * 1e3,
        "encode_ms": encode_s * 1e3,
        "json_encode_ms": json_s * 1e3,
        "json_over_encode": json_s / encode_s,
        "deflated_page_frame_bytes": sum(len(_deflate(data)) for data in raw) / len(raw),
        "deflate_ms": deflate_s * 1e3,
    }


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _mean_bytes(texts: list[str]) -> float:
    return sum(len(text.encode()) for text in texts) / len(texts)


def _per_call(fn: Callable[[], Any]) -> float:
    """Median seconds of one call of fn over 7 calls, after one to warm up."""
    fn()
    times = []
    for _ in range(7):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
