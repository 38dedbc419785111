"""The wire records (hello, frame, event, error): schema version, one-sync packing, JSON safety."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

# Adding a field keeps the version; renaming or removing one bumps it (docs/protocol.md).
SCHEMA_VERSION = 1

Json = Any


@dataclass(frozen=True)
class Slot:
    """Where one tensor's values sit in a Packer's flat buffer, and how to give them back."""

    start: int
    shape: tuple[int, ...]
    integer: bool

    def read(self, flat: list[float]) -> Json:
        size = math.prod(self.shape)
        values: list[Any] = flat[self.start : self.start + size]
        if self.integer:
            values = [int(value) for value in values]
        if not self.shape:
            return values[0]
        if len(self.shape) == 1:
            return values
        row = self.shape[-1]
        return [values[i : i + row] for i in range(0, size, row)]  # 2-D is the deepest we send


class Packer:
    """Collects a frame's tensors and converts them to Python with a single sync point."""

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []
        self._size = 0

    def add(self, tensor: torch.Tensor) -> Slot:
        if tensor.dim() > 2:
            raise ValueError("Packer holds scalars, vectors and matrices only")
        slot = Slot(self._size, tuple(tensor.shape), not tensor.is_floating_point())
        # A copy, so later in-place updates (optimizer steps, BN buffers) cannot change it.
        self._parts.append(tensor.detach().reshape(-1).to(torch.float64, copy=True))
        self._size += tensor.numel()
        return slot

    def resolve(self, template: Json) -> Json:
        """Replace every Slot in template by its values; non-finite floats become None and are
        listed under the top-level "nonfinite" key as JSON-pointer -> "nan" | "inf" | "-inf"."""
        if not self._parts:
            return _fill(template, [])
        flat_tensor = torch.cat(self._parts)
        bad = (~torch.isfinite(flat_tensor)).sum().reshape(1).double()
        flat = torch.cat([flat_tensor, bad]).tolist()  # sync point: the frame's only one
        filled = _fill(template, flat)
        if flat[-1] > 0 and isinstance(filled, dict):
            return json_safe(filled)
        return filled


def _fill(template: Json, flat: list[float]) -> Json:
    if isinstance(template, Slot):
        return template.read(flat)
    if isinstance(template, dict):
        return {key: _fill(value, flat) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, flat) for value in template]
    return template


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
                k: clean(v, f"{pointer}/{_escape(k)}")
                for k, v in value.items()
                if k != "nonfinite"
            }
        if isinstance(value, list):
            return [clean(v, f"{pointer}/{i}") for i, v in enumerate(value)]
        return value

    cleaned: dict[str, Json] = clean(record, "")
    if flags:
        cleaned["nonfinite"] = flags
    return cleaned


def message(kind: str, **fields: Json) -> dict[str, Json]:
    """A versioned wire message of the given type (fields may still hold Slots to resolve)."""
    return {"v": SCHEMA_VERSION, "type": kind, **fields}


def _escape(key: str) -> str:
    """JSON-pointer escaping (RFC 6901) of one key."""
    return key.replace("~", "~0").replace("/", "~1")
