"""The wire format, torch-free: schema version, message envelopes, JSON encoding and safety.

Every message is {"v": SCHEMA_VERSION, "type": ..., ...}; JSON has no NaN or Infinity, so a
non-finite float travels as null and is flagged under "nonfinite" (docs/protocol.md).
"""

from __future__ import annotations

import json
import math
from typing import Any

SCHEMA_VERSION = 1

Json = Any


def _describe(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def json_safe(record: dict[str, Json]) -> dict[str, Json]:
    """Copy of record with each non-finite float replaced by None and flagged in "nonfinite"."""
    flags: dict[str, str] = dict(record.get("nonfinite") or {})

    def clean(value: Json, pointer: str) -> Json:
        if isinstance(value, float) and not math.isfinite(value):
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


def encode(record: dict[str, Any]) -> str:
    """Compact JSON; a non-finite float the producer missed becomes null plus a flag."""
    try:
        return json.dumps(record, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(json_safe(record), allow_nan=False, separators=(",", ":"))


def state_event(step: int, state: str, **fields: Any) -> dict[str, Any]:
    """The event that tells every client a run's state changed (kind "state")."""
    return message("event", step=step, kind="state", state=state, **fields)
