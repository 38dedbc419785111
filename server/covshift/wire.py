"""The wire format, torch-free: schema version, message envelopes, JSON encoding and safety.

Every message is {"v": SCHEMA_VERSION, "type": ..., ...}; JSON has no NaN or Infinity, so a
non-finite float travels as null and is flagged under "nonfinite" (docs/protocol.md).
A frame is written compactly (version 2): a tap equal to an earlier tap of its layer is
that tap's name, histogram counts leave out their zero ends, zero outside-counts are left
out. Readers take both versions; `tap_of` follows a tap written as a name.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

SCHEMA_VERSION = 2

Json = Any


def _describe(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def json_safe(record: dict[str, Json]) -> dict[str, Json]:
    """Copy of record with each non-finite float replaced by None and flagged in "nonfinite"."""
    flags: dict[str, str] = dict(record.get("nonfinite") or {})

    def clean(value: Json, pointer: str) -> Json:
        if _nonfinite_number(value):
            flags[pointer] = _describe(value)
            return None
        if isinstance(value, dict):
            return {
                k: clean(v, f"{pointer}/{_escape(k)}") for k, v in value.items() if k != "nonfinite"
            }
        if isinstance(value, list):
            return [clean(v, f"{pointer}/{i}") for i, v in enumerate(value)]
        return value

    cleaned: dict[str, Json] = clean(record, "")
    if flags:
        cleaned["nonfinite"] = flags
    return cleaned


def message(message_type: str, **fields: Json) -> dict[str, Json]:
    """A versioned wire message of the given type (fields may still hold Slots to resolve)."""
    return {"v": SCHEMA_VERSION, "type": message_type, **fields}


def _escape(key: str) -> str:
    """JSON-pointer escaping (RFC 6901) of one key."""
    return key.replace("~", "~0").replace("/", "~1")


# What reading a record of the wrong shape raises (a damaged file: valid JSON, but not the
# fields docs/protocol.md says): readers skip such a record and count it.
MISFIT: tuple[type[Exception], ...] = (
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    ValueError,
    RecursionError,
)


class Finite(dict[str, Any]):
    """A record whose floats are all finite, or already null and flagged (json_safe's
    promise): encoding it skips the check. The frame packer returns one."""


def encode(record: dict[str, Any]) -> str:
    """Compact JSON (a frame in its compact form); a non-finite float the producer missed
    becomes null plus a flag. orjson would write NaN as null silently, hence the check."""
    return _dumps(record, 0).decode()


def encode_line(record: dict[str, Any]) -> bytes:
    """encode's JSON as one line of a .jsonl file, in UTF-8 (written as it comes from the
    encoder, without a round trip through str)."""
    return _dumps(record, orjson.OPT_APPEND_NEWLINE)


def _dumps(record: dict[str, Any], option: int) -> bytes:
    if not isinstance(record, Finite) and _has_nonfinite(record):
        record = json_safe(record)
    if record.get("type") == "frame":
        record = compact_frame(record)
    try:
        return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | option)
    except orjson.JSONEncodeError:
        # What orjson does not take (an integer past 64 bits, echoed from a client's `id`):
        # the standard library writes any JSON value; NaN were turned into null above.
        text = json.dumps(record, allow_nan=False, separators=(",", ":"), default=_plain)
        return (text + "\n" if option & orjson.OPT_APPEND_NEWLINE else text).encode()


def _plain(value: object) -> Json:
    """A NumPy scalar or array as Python numbers, for the standard library's encoder."""
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return tolist()


def _nonfinite_number(value: Json) -> bool:
    """NaN or ±inf, as a Python float or a NumPy scalar (which orjson writes too)."""
    if isinstance(value, float) or (
        type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0
    ):
        return not math.isfinite(value)
    return False


def _has_nonfinite(value: Json) -> bool:
    if _nonfinite_number(value):
        return True
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nonfinite(v) for v in value)
    return False


# What a frame's tap object leaves out when it is zero (a reader takes it as 0).
ZERO_OMITTED = ("underflow", "overflow", "nonfinite")


def compact_frame(frame: dict[str, Json]) -> dict[str, Json]:
    """The frame as version 2 writes it (docs/protocol.md): a copy where every layer's taps
    are compact. The frame itself is left as it is."""
    variants = frame.get("variants")
    if not isinstance(variants, dict):
        return frame
    compact: dict[str, Json] = {}
    named: list[str] = []  # JSON pointers of the taps written as another's name
    for name, entry in variants.items():
        layers = entry.get("layers") if isinstance(entry, dict) else None
        if not isinstance(layers, list):
            compact[name] = entry
            continue
        where = f"/variants/{_escape(name)}/layers"
        compact[name] = {
            **entry,
            "layers": [
                _compact_layer(layer, f"{where}/{i}", named) for i, layer in enumerate(layers)
            ],
        }
    written = {**frame, "v": SCHEMA_VERSION, "variants": compact}
    flags = frame.get("nonfinite")
    if isinstance(flags, dict) and named:
        # A value inside a tap written as a name is flagged where that tap is written out.
        written["nonfinite"] = {
            pointer: kind
            for pointer, kind in flags.items()
            if not any(pointer.startswith(tap + "/") for tap in named)
        }
    return written


def _compact_layer(layer: Json, pointer: str, named: list[str]) -> Json:
    taps = layer.get("taps") if isinstance(layer, dict) else None
    if not isinstance(taps, dict):
        return layer
    written: dict[str, Json] = {}
    kept: list[tuple[str, Json]] = []  # the taps written out in full, as measured
    for tap, stats in taps.items():
        for name, earlier in kept:
            if earlier is stats or earlier == stats:
                written[tap] = name
                named.append(f"{pointer}/taps/{_escape(tap)}")
                break
        else:
            kept.append((tap, stats))
            written[tap] = _compact_tap(stats)
    return {**layer, "taps": written}


def _compact_tap(stats: Json) -> Json:
    if not isinstance(stats, dict):
        return stats
    out = dict(stats)
    for key in ZERO_OMITTED:
        if key in out and out[key] == 0:
            del out[key]
    counts = stats.get("counts")
    if isinstance(counts, list) and "first" not in stats:
        # the empty bins at either end go (walked in from the ends: most bins are filled)
        first, last = 0, len(counts)
        while first < last and not counts[first]:
            first += 1
        while last > first and not counts[last - 1]:
            last -= 1
        if first == last:  # no value inside the edges
            first = last = 0
        out["counts"] = counts[first:last]
        if first:
            out["first"] = first
    return out


def tap_of(layer: dict[str, Json], tap: str) -> dict[str, Json] | None:
    """A layer's statistics of one tap, following a tap written as the name of an equal
    earlier one (version 2); None when the layer has no such tap."""
    taps = layer.get("taps")
    if not isinstance(taps, dict):
        return None
    found = taps.get(tap)
    if isinstance(found, str):
        found = taps.get(found)
    return found if isinstance(found, dict) else None


def dense_counts(stats: dict[str, Json], bins: int) -> list[int]:
    """A tap's histogram as every bin's count, from either version's form."""
    first = int(stats.get("first") or 0)
    counts = list(stats.get("counts") or [])
    return [0] * first + counts + [0] * (bins - first - len(counts))


def state_event(step: int, state: str, **fields: Any) -> dict[str, Any]:
    """The event that tells every client a run's state changed (kind "state")."""
    return message("event", step=step, kind="state", state=state, **fields)
