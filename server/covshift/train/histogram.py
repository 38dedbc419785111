"""Batched tensor statistics: fixed-edge histograms, percentiles, moments and 1-Wasserstein drift.

Every function takes one row per measured tensor (rows x values) and returns one
result per row (NumPy arrays on the host), so a whole frame is reduced in a handful of calls.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

PERCENTILES = (1, 15, 50, 85, 99)


@dataclass(frozen=True)
class RowStats:
    """Statistics of each row; non-finite values are counted, never binned or averaged."""

    # (rows, bins + 2): the finite values below the first edge (underflow), those in each
    # bin (the last bin includes its right edge), those above the last edge (overflow)
    cells: np.ndarray
    nonfinite: np.ndarray  # (rows,) NaN and +-inf
    percentiles: np.ndarray  # (rows, len(PERCENTILES)) linear interpolation, as numpy
    mean: np.ndarray
    std: np.ndarray  # population std (ddof=0)
    min: np.ndarray
    max: np.ndarray
    # Each unique values row sorted, non-finite ones as +inf last: (unique rows, n), or one
    # array per unique row when rows differ in length (reduce_ragged).
    ordered: np.ndarray | list[np.ndarray]
    source: list[int]  # result row i describes ordered[source[i]]

    @property
    def counts(self) -> np.ndarray:
        """(rows, bins) values inside the edges; the last bin includes its right edge."""
        return self.cells[:, 1:-1]

    @property
    def underflow(self) -> np.ndarray:
        """(rows,) finite values below the first edge."""
        return self.cells[:, 0]

    @property
    def overflow(self) -> np.ndarray:
        """(rows,) finite values above the last edge."""
        return self.cells[:, -1]

    def full_counts(self) -> np.ndarray:
        """Counts with underflow and overflow as outer cells: (rows, bins + 2)."""
        return self.cells

    def count_below(self, row: int, thresholds: np.ndarray) -> np.ndarray:
        """How many values of result row `row` are below each float32 threshold (a binary
        search in the sorted row; +inf stands for the non-finite ones, so keep
        thresholds finite)."""
        found: np.ndarray = np.searchsorted(self.ordered[self.source[row]], thresholds)
        return found


def nice_ceil(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= value (readable axis limits)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        limit = step * 10.0**exponent
        if limit >= value * (1 - 1e-12):
            return limit
    return 10.0 ** (exponent + 1)


def make_edges(lo: float, hi: float, bins: int) -> torch.Tensor:
    """bins + 1 evenly spaced float32 edges; the float32 values are the edges, exactly."""
    if not hi > lo:
        raise ValueError(f"histogram range needs hi > lo, got [{lo}, {hi}]")
    return torch.linspace(lo, hi, bins + 1, dtype=torch.float64).to(torch.float32)


@dataclass(frozen=True)
class Bins:
    """Rows of fixed histogram edges in the form a sorted row is searched with: made once
    for a run's edges, not per frame.

    Bin k holds edge[k] <= v < edge[k+1]; the last bin also holds v == edge[-1], as numpy.
    Float32 values below the float32 just above the last edge are those <= the last edge,
    and non-finite values sort last as +inf, so one binary search per row for
    (-inf, every edge but the last, that float32, +inf) finds every cell's bounds.
    """

    targets: torch.Tensor  # (rows, bins + 3) float32

    @classmethod
    def from_edges(cls, edges: torch.Tensor) -> Bins:
        """Bins of edges (rows, bins + 1)."""
        rows = edges.detach().float().cpu().numpy()
        inf = np.float32(np.inf)
        ends = np.full((len(rows), 1), inf)
        beyond = np.nextafter(rows[:, -1:], inf)
        return cls(torch.from_numpy(np.concatenate([-ends, rows[:, :-1], beyond, ends], axis=1)))

    def take(self, rows: list[int]) -> Bins:
        """These rows' bins, in this order."""
        return Bins(self.targets[rows])


def reduce_rows(
    values: torch.Tensor, edges: torch.Tensor | Bins, source: list[int] | None = None
) -> RowStats:
    """Reduce rows of `values` (unique rows, n), each result row over its own edges
    (rows, bins + 1). Result row i describes values row source[i] (default: row i), so a
    tensor measured under several names is sorted once.

    One sort per row gives everything: the histogram is a binary search of the edges
    in the sorted row, the percentiles and extremes are look-ups into it. The work is
    done in NumPy on the host: its vectorised sort is ~30x faster than torch's on the CPU.
    """
    bins = edges if isinstance(edges, Bins) else Bins.from_edges(edges)
    unique, n = values.shape
    rows = list(range(unique)) if source is None else source
    array = values.detach().float().cpu().numpy()  # sync point on CUDA: once per frame
    # The moments are taken in float64 (each float32 value is exactly a float64).
    wide = array.astype(np.float64)
    sums = wide.sum(axis=1)
    # A NaN or infinity anywhere makes its row's sum one (a float64 sum of float32 values
    # cannot overflow), and the sum of the sums.
    n_finite: np.ndarray | None = None  # None: every value is finite
    if not math.isfinite(sums.sum()) or n == 0:
        finite = np.isfinite(array)
        n_finite = finite.sum(axis=1)
        wide[~finite] = 0.0
        sums = wide.sum(axis=1)
        array = np.where(finite, array, np.float32(np.inf))
    ordered = np.sort(array, axis=1)
    # One batched search (torch has one; NumPy would take a call per row).
    searched = torch.from_numpy(ordered)
    if rows != list(range(unique)):  # a tensor measured over several edges is searched twice
        searched = searched[rows]
    bounds = torch.searchsorted(searched, bins.targets).numpy()
    stats = _stats_from_sorted(ordered, wide, sums, n_finite)
    return RowStats(
        cells=bounds[:, 1:] - bounds[:, :-1],
        nonfinite=n - bounds[:, -1],  # the first +inf is past the last finite value
        **{name: column[rows] for name, column in stats.items()},
        ordered=ordered,
        source=rows,
    )


def reduce_ragged(
    values: Sequence[torch.Tensor], edges: torch.Tensor | Bins, source: list[int] | None = None
) -> RowStats:
    """reduce_rows for unique rows that may differ in length (layers of different sizes), each
    tensor taken whole (flattened). Rows of one length are reduced together, so each unique
    tensor is still sorted once; the result rows keep the order of `source`."""
    rows = list(range(len(values))) if source is None else source
    bins = edges if isinstance(edges, Bins) else Bins.from_edges(edges)
    flat = [value.reshape(-1) for value in values]
    lengths = [row.numel() for row in flat]
    if len(set(lengths)) == 1:
        return reduce_rows(torch.stack(flat), bins, rows)
    if any(row.device.type != "cpu" for row in flat):
        # One transfer for the whole frame (a sync point on CUDA), then split on the host.
        flat = list(torch.split(torch.cat([row.float() for row in flat]).cpu(), lengths))
    groups: dict[int, list[int]] = {}
    for unique, length in enumerate(lengths):
        groups.setdefault(length, []).append(unique)
    ordered: list[np.ndarray] = [np.empty(0, np.float32)] * len(flat)
    order: list[int] = []
    parts: list[RowStats] = []
    for members in groups.values():
        local = {unique: i for i, unique in enumerate(members)}
        picked = [r for r, unique in enumerate(rows) if unique in local]
        if not picked:
            continue
        stats = reduce_rows(
            torch.stack([flat[u] for u in members]),
            bins.take(picked),
            [local[rows[r]] for r in picked],
        )
        for unique, i in local.items():
            ordered[unique] = stats.ordered[i]
        order += picked
        parts.append(stats)
    back = np.argsort(np.array(order))  # group order -> row order

    def gather(name: str) -> np.ndarray:
        gathered: np.ndarray = np.concatenate([getattr(part, name) for part in parts])[back]
        return gathered

    return RowStats(
        cells=gather("cells"),
        nonfinite=gather("nonfinite"),
        percentiles=gather("percentiles"),
        mean=gather("mean"),
        std=gather("std"),
        min=gather("min"),
        max=gather("max"),
        ordered=ordered,
        source=rows,
    )


def interpolate_sorted(rows: np.ndarray, position: np.ndarray) -> np.ndarray:
    """The values at fractional positions of rows sorted along their last axis, linear
    between neighbours (numpy's default quantile method), in float64; `position` has the
    rows' leading shape and the positions last, or is one vector of positions for all."""
    low = np.floor(position).astype(np.intp)
    high = np.ceil(position).astype(np.intp)
    if position.ndim == 1:
        low_value = rows[..., low].astype(np.float64)
        high_value = rows[..., high].astype(np.float64)
    else:
        low_value = np.take_along_axis(rows, low, axis=-1).astype(np.float64)
        high_value = np.take_along_axis(rows, high, axis=-1).astype(np.float64)
    result: np.ndarray = low_value + (high_value - low_value) * (position - low)
    return result


# The extremes and PERCENTILES, as fractions of the way along a sorted row.
_FRACTIONS = np.array([0, *PERCENTILES, 100], dtype=np.float64) / 100


@functools.cache
def _read_positions(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Where interpolate_sorted reads the extremes and PERCENTILES in a sorted row of n
    values: the lower then the upper neighbours' indices, and the weight of the upper."""
    position = _FRACTIONS * (n - 1)
    low = np.floor(position).astype(np.intp)
    high = np.ceil(position).astype(np.intp)
    indices, weight = np.concatenate([low, high]), position - low
    indices.flags.writeable = weight.flags.writeable = False
    return indices, weight


def _stats_from_sorted(
    ordered: np.ndarray, zeroed: np.ndarray, sums: np.ndarray, n_finite: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Percentiles and moments of each sorted row; NaN for rows with no finite value.
    zeroed: the rows in float64, non-finite values as 0, in any order; centred in place.
    n_finite: each row's count of finite values, or None when every value is finite."""
    n = ordered.shape[1]
    if n_finite is None:
        # Every row full and finite: one set of positions (the extremes are the first and
        # last), read in one look-up, and no row to mask.
        indices, weight = _read_positions(n)
        neighbours = ordered[:, indices].astype(np.float64)
        low, high = neighbours[:, : len(weight)], neighbours[:, len(weight) :]
        read = low + (high - low) * weight
        mean = sums / n
        centred = np.subtract(zeroed, mean[:, None], out=zeroed)
        std = np.sqrt(np.einsum("ij,ij->i", centred, centred) / n)
        return _columns(read, mean, std)
    has_finite = n_finite > 0
    last = np.maximum(n_finite - 1, 0)
    # Rows with no finite value do arithmetic on inf here; they are replaced by NaN below.
    with np.errstate(invalid="ignore", divide="ignore"):
        read = interpolate_sorted(ordered, _FRACTIONS[None, :] * last[:, None])
        mean = sums / n_finite
        centred = np.subtract(zeroed, mean[:, None], out=zeroed)
        # Each zeroed non-finite entry added mean^2 to the sum of squares; take it back out.
        squares = np.einsum("ij,ij->i", centred, centred) - (n - n_finite) * mean * mean
        std = np.sqrt(np.maximum(squares, 0.0) / n_finite)
    columns = _columns(read, mean, std)
    if has_finite.all():
        return columns
    return {
        name: np.where(has_finite if column.ndim == 1 else has_finite[:, None], column, np.nan)
        for name, column in columns.items()
    }


def _columns(read: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    """RowStats' fields from the values read at _FRACTIONS and the moments."""
    return {
        "percentiles": read[:, 1:-1],
        "mean": mean,
        "std": std,
        "min": read[:, 0],
        "max": read[:, -1],
    }


def wasserstein1(full_a: ArrayLike, full_b: ArrayLike, bin_width: ArrayLike) -> np.ndarray:
    """1-Wasserstein distance between histograms over the same evenly spaced cells.

    full_a, full_b: (..., rows, cells) counts with underflow/overflow as outer cells, which
    places their mass one bin-width outside the range (leading axes broadcast, so several
    histograms compare with one); bin_width: (rows,). On a line, W1 is the area between
    the two CDFs. Rows with no mass on either side give NaN.
    """
    a = np.asarray(full_a, dtype=np.float64)
    b = np.asarray(full_b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf_a = a.cumsum(axis=-1) / a.sum(axis=-1, keepdims=True)
        cdf_b = b.cumsum(axis=-1) / b.sum(axis=-1, keepdims=True)
        distance: np.ndarray = np.abs(cdf_a - cdf_b)[..., :-1].sum(axis=-1)
        return distance * np.asarray(bin_width, dtype=np.float64)
