"""What a page's view needs of a run: its tap's histograms and one channel of each normalizer.

A page draws one tap's histograms at a time (the distribution charts) and one channel of
each normalizer's per-channel statistics (the BN chart), while a frame carries every tap's
histogram and every channel: most of its bytes. A client that names its view (the
websocket's `tap` and `channel` query parameters, or a `view` message) gets frames
projected to it: every tap keeps its statistics, only the view's tap keeps its counts, and
each per-channel list keeps the view's channel. Its history comes as one gzip-compressed
`history` message, built off the event loop. docs/protocol.md describes both.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from covshift.wire import SCHEMA_VERSION

# A layer's objects that hold one list entry per channel (unit) of the layer.
PER_CHANNEL = ("bn", "affine", "weight_norm")
# A tap's fields that only a drawn histogram needs.
HISTOGRAM = ("counts", "first")
# Tap names are identifiers (linear_out, norm_xhat, ...; a watched run's are the same).
TAP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Wider than any layer covshift builds or watches (config: width <= 1024).
MAX_CHANNEL = 65_535
# A 500-frame history (3.4 MB projected) in ~30 ms to 1.25 MB; level 5 takes ~90 ms for
# 1.05 MB, level 6 ~120 ms for 1.02 MB. A join costs the server its CPU, so the fast level.
GZIP_LEVEL = 1

_FRAME = re.compile(r'\{\s*"v"\s*:\s*\d+\s*,\s*"type"\s*:\s*"frame"')


@dataclass(frozen=True)
class View:
    """What one page shows: the tap its distribution charts draw, the channel its BN chart
    draws (0-based)."""

    tap: str
    channel: int


def view_error(tap: object, channel: object) -> str | None:
    """Why (tap, channel) is not a view, naming the field; None when it is one."""
    if not isinstance(tap, str) or not TAP_NAME.fullmatch(tap):
        return "tap: a tap name (letters, digits and _, at most 64), e.g. act_input"
    if isinstance(channel, bool) or not isinstance(channel, int):
        return "channel: an integer, the channel's index from 0"
    if not 0 <= channel <= MAX_CHANNEL:
        return f"channel: from 0 to {MAX_CHANNEL}"
    return None


def project(frame: dict[str, Any], view: View) -> dict[str, Any]:
    """The frame as the view needs it (the frame itself is left as it is). A `nonfinite`
    map still points into the whole frame."""
    variants = frame.get("variants")
    if not isinstance(variants, dict):
        return frame
    projected: dict[str, Any] = {}
    for name, entry in variants.items():
        layers = entry.get("layers") if isinstance(entry, dict) else None
        if isinstance(layers, list):
            entry = {**entry, "layers": [_layer(layer, view) for layer in layers]}
        projected[name] = entry
    return {**frame, "variants": projected}


def _layer(layer: Any, view: View) -> Any:
    if not isinstance(layer, dict):
        return layer
    out = dict(layer)
    taps = layer.get("taps")
    if isinstance(taps, dict):
        shown = taps.get(view.tap)
        drawn = shown if isinstance(shown, str) else view.tap  # a tap written as another's name
        out["taps"] = {
            tap: stats if tap == drawn or not isinstance(stats, dict) else _statistics(stats)
            for tap, stats in taps.items()
        }
    for key in PER_CHANNEL:
        stats = layer.get(key)
        if isinstance(stats, dict):
            out[key] = _one_channel(stats, view.channel)
    return out


def _statistics(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in stats.items() if key not in HISTOGRAM}


def _one_channel(stats: dict[str, Any], channel: int) -> dict[str, Any]:
    out = {k: v[channel : channel + 1] if isinstance(v, list) else v for k, v in stats.items()}
    out["channels"] = [channel]
    return out


def projections(frame_text: str, views: set[View]) -> dict[View, str]:
    """A frame's text for each of these views: parsed once, projected once per view."""
    frame = orjson.loads(frame_text)
    return {view: orjson.dumps(project(frame, view)).decode() for view in views}


def history_message(
    texts: list[str], view: View, projected: Mapping[str, str] | None = None
) -> bytes:
    """The history a client with this view joins with: one `history` message holding the
    messages in order (frames projected), gzip-compressed. `projected` maps frame texts to
    their projection where it was made already (live frames, for the views being watched).
    CPU-bound: run it in a thread."""
    known = projected or {}
    parts = []
    for text in texts:
        done = known.get(text)
        if done is not None:
            parts.append(done.encode())
        elif _FRAME.match(text):
            parts.append(orjson.dumps(project(orjson.loads(text), view)))
        else:
            parts.append(text.encode())
    head = b'{"v":%d,"type":"history","messages":[' % SCHEMA_VERSION
    return gzip.compress(head + b",".join(parts) + b"]}", GZIP_LEVEL, mtime=0)
