"""Frame assembly: a frame's tensors gathered, then converted to Python in one sync point."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Any

import numpy as np
import torch

from covshift.wire import Finite, Json, json_safe


@dataclass(frozen=True)
class Slot:
    """A reference to one packed tensor, or to one row / element / span of it."""

    part: int
    path: tuple[int | slice, ...] = ()

    def row(self, i: int) -> Slot:
        """Row i of a matrix, or element i of a vector."""
        return Slot(self.part, (*self.path, i))

    def part_of(self, begin: int, end: int) -> Slot:
        """Elements begin:end of a vector."""
        return Slot(self.part, (*self.path, slice(begin, end)))

    def read(self, parts: list[Json]) -> Json:
        value = parts[self.part]
        for step in self.path:
            value = value[step]
        return value


class Packer:
    """Collects a frame's tensors and converts them to Python with a single sync point."""

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []
        # host numbers and who writes them into the template once they are shortened
        self._later: list[tuple[np.ndarray, Callable[[Json], None]]] = []
        # Set by producers that put plain (unpacked) numbers in the template which may be NaN.
        self.unpacked_nonfinite = False

    def add(self, tensor: torch.Tensor, copy: bool = True) -> Slot:
        """A part of the frame. It is copied, so later in-place updates (optimizer steps, BN
        buffers) cannot change it; copy=False for a tensor made for the frame (a stack)."""
        self._parts.append(tensor.detach().clone() if copy else tensor.detach())
        return Slot(len(self._parts) - 1)

    def later(self, numbers: np.ndarray, fill: Callable[[Json], None]) -> None:
        """Floating numbers already on the host, shortened with the frame's tensors and handed
        to `fill` as (nested) lists when the frame resolves, before its template is filled:
        a producer building plain dicts (Filled) writes them in there, and its numbers cost
        no conversion of their own. Non-finite ones are flagged as a part's are."""
        self._later.append((numbers, fill))

    def resolve(self, template: Json) -> Json:
        """Replace every Slot in template by its values; non-finite floats become None and are
        listed under the top-level "nonfinite" key as JSON-pointer -> "nan" | "inf" | "-inf"."""
        if not self._parts and not self._later:
            filled = _fill(template, [])
            return _checked(json_safe(filled) if self.unpacked_nonfinite else filled)
        # Floating parts first, then the host numbers (all shortened in one go), then the
        # integer parts, all as one float64 array: NumPy has far less overhead per call than
        # torch on a few thousand numbers.
        packed = self._parts
        order = sorted(range(len(packed)), key=lambda i: not packed[i].is_floating_point())
        n_short = sum(1 for part in packed if part.is_floating_point())
        pieces = [piece.numpy() for piece in _on_host([packed[i].reshape(-1) for i in order])]
        later = [numbers for numbers, _ in self._later]
        segments = [*pieces[:n_short], *later, *pieces[n_short:]]
        flat = np.concatenate([segment.reshape(-1) for segment in segments], dtype=np.float64)
        bounds = list(accumulate((segment.size for segment in segments), initial=0))
        floating = bounds[n_short + len(later)]
        flat[:floating] = shortened(flat[:floating])
        bad = not bool(np.isfinite(flat).all())
        numbers = flat.tolist()  # one conversion; each part is a slice of it
        chunks = [numbers[begin:end] for begin, end in pairwise(bounds)]
        parts: list[Json] = [None] * len(order)
        for k, i in enumerate(order):
            if k < n_short:
                parts[i] = _nest(chunks[k], tuple(packed[i].shape))
            else:
                integers = [int(value) for value in chunks[k + len(later)]]
                parts[i] = _nest(integers, tuple(packed[i].shape))
        for (host, fill), chunk in zip(
            self._later, chunks[n_short : n_short + len(later)], strict=True
        ):
            fill(_nest(chunk, host.shape))
        filled = _fill(template, parts)
        if (bad or self.unpacked_nonfinite) and isinstance(filled, dict):
            return _checked(json_safe(filled))
        return _checked(filled)


def significant(value: float | None) -> float | None:
    """A plain number as the packer writes a packed one: to 9 significant digits (None and
    non-finite values as they are)."""
    if value is None or not math.isfinite(value):
        return value
    return float(f"{value:.9g}")


def _checked(filled: Json) -> Json:
    """A resolved record, marked as checked for non-finite numbers (torch looked at every
    packed value; unpacked ones are checked where a producer says they may be non-finite)."""
    return Finite(filled) if isinstance(filled, dict) else filled


def _nest(values: list[Json], shape: tuple[int, ...]) -> Json:
    """A flat row-major list as nested lists of the given shape (a scalar for shape ())."""
    if not shape:
        return values[0]
    if len(shape) == 1:
        return values
    stride = len(values) // shape[0] if shape[0] else 0
    return [_nest(values[r * stride : (r + 1) * stride], shape[1:]) for r in range(shape[0])]


def _on_host(pieces: list[torch.Tensor]) -> list[torch.Tensor]:
    """The pieces on the CPU. Those on an accelerator travel in one transfer: the frame's only
    sync point (some reductions run on the host, so a frame can mix both)."""
    remote = [i for i, piece in enumerate(pieces) if piece.device.type != "cpu"]
    if not remote:
        return pieces
    # One dtype per transfer: float32 stays float32, the rest travels as float64.
    host = list(pieces)
    for group in (
        [i for i in remote if pieces[i].dtype == torch.float32],
        [i for i in remote if pieces[i].dtype != torch.float32],
    ):
        if not group:
            continue
        dtype = torch.float32 if pieces[group[0]].dtype == torch.float32 else torch.float64
        moved = torch.cat([pieces[i].to(dtype) for i in group]).cpu()
        sizes = [pieces[i].numel() for i in group]
        for i, chunk in zip(group, torch.split(moved, sizes), strict=True):
            host[i] = chunk
    return host


def shortened(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """Floating values as float64, each the double nearest to its 9-significant-digit
    decimal: JSON then writes ~10 characters instead of 17-19. A float32 value cast back to
    float32 gives exactly its original bits (9 significant digits round-trip float32); a
    statistic computed in float64 from float32 data (a percentile, a mean) keeps more
    digits than its data had (9 against float32's ~7)."""
    wide = np.asarray(values.numpy() if isinstance(values, torch.Tensor) else values, np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # 10**exponent scales a value to 9 digits before the point. Only where it is an exact
        # double (0..22) is the rounding exact: 0 (exponent inf), NaN, the infinities and
        # the very small or large are left as they are.
        exponent = 8.0 - np.floor(np.log10(np.abs(wide)))
        usable = (exponent >= 0) & (exponent <= 22)
        scale = 10.0 ** np.where(usable, exponent, 0.0)
        return np.where(usable, np.round(wide * scale) / scale, wide)


class Filled(dict[str, Any]):
    """A dict holding plain values (some written in by a Packer.later fill as the frame
    resolves, before its template is filled): resolving a template leaves it as it is."""


def _fill(template: Json, parts: list[Json]) -> Json:
    if isinstance(template, Slot):
        return template.read(parts)
    if isinstance(template, Filled):
        return template
    if isinstance(template, dict):
        return {key: _fill(value, parts) for key, value in template.items()}
    if isinstance(template, list):
        if template and not isinstance(template[0], (Slot, dict, list)):
            return template  # already plain numbers (e.g. histogram counts): nothing to fill
        return [_fill(value, parts) for value in template]
    return template
