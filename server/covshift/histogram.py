"""Batched tensor statistics: fixed-edge histograms, percentiles, moments and 1-Wasserstein drift.

Every function takes one row per measured tensor (rows x values) and returns one
result per row, so a whole frame is reduced in a handful of torch calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PERCENTILES = (1, 15, 50, 85, 99)


@dataclass(frozen=True)
class RowStats:
    """Statistics of each row; non-finite values are counted, never binned or averaged."""

    counts: torch.Tensor  # (rows, bins) values inside the edges; the last bin includes its right edge
    underflow: torch.Tensor  # (rows,) finite values below the first edge
    overflow: torch.Tensor  # (rows,) finite values above the last edge
    nonfinite: torch.Tensor  # (rows,) NaN and +-inf
    percentiles: torch.Tensor  # (rows, len(PERCENTILES)) linear interpolation, as numpy
    mean: torch.Tensor
    std: torch.Tensor  # population std (ddof=0)
    min: torch.Tensor
    max: torch.Tensor

    def full_counts(self) -> torch.Tensor:
        """Counts with underflow and overflow as outer cells: (rows, bins + 2)."""
        return torch.cat([self.underflow[:, None], self.counts, self.overflow[:, None]], dim=1)


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


def reduce_rows(values: torch.Tensor, edges: torch.Tensor) -> RowStats:
    """Reduce each row of `values` (rows, n) over its own edges (rows, bins + 1)."""
    rows = values.shape[0]
    bins = edges.shape[1] - 1
    values = values.float()
    finite = torch.isfinite(values)
    # searchsorted(right=True): 0 below the first edge, k for edge[k-1] <= v < edge[k],
    # bins + 1 at or above the last edge; the last edge itself belongs to the last bin.
    cell = torch.searchsorted(edges.contiguous(), values.contiguous(), right=True)
    cell = torch.where(values == edges[:, -1:], torch.full_like(cell, bins), cell)
    cell = torch.where(finite, cell, torch.full_like(cell, bins + 2))
    offsets = torch.arange(rows, device=values.device)[:, None] * (bins + 3)
    tally = torch.bincount((cell + offsets).reshape(-1), minlength=rows * (bins + 3))
    tally = tally.reshape(rows, bins + 3)

    n_finite = finite.sum(dim=1)
    zeroed = torch.where(finite, values, torch.zeros_like(values)).double()
    mean = zeroed.sum(dim=1) / n_finite
    centred = torch.where(finite, zeroed - mean[:, None], torch.zeros_like(zeroed))
    std = (centred.square().sum(dim=1) / n_finite).sqrt()
    nan = torch.tensor(float("nan"), device=values.device)
    has_finite = n_finite > 0
    low = torch.where(finite, values, torch.full_like(values, math.inf)).amin(dim=1)
    high = torch.where(finite, values, torch.full_like(values, -math.inf)).amax(dim=1)
    q = torch.tensor([p / 100 for p in PERCENTILES], device=values.device, dtype=torch.float64)
    with_nan = torch.where(finite, values.double(), nan.double())
    percentiles = torch.nanquantile(with_nan, q, dim=1).T
    return RowStats(
        counts=tally[:, 1 : bins + 1],
        underflow=tally[:, 0],
        overflow=tally[:, bins + 1],
        nonfinite=tally[:, bins + 2],
        percentiles=percentiles,
        mean=torch.where(has_finite, mean, nan.double()),
        std=torch.where(has_finite, std, nan.double()),
        min=torch.where(has_finite, low, nan),
        max=torch.where(has_finite, high, nan),
    )


def wasserstein1(full_a: torch.Tensor, full_b: torch.Tensor, bin_width: torch.Tensor) -> torch.Tensor:
    """1-Wasserstein distance between histograms over the same evenly spaced cells.

    full_a, full_b: (rows, cells) counts with underflow/overflow as outer cells, which
    places their mass one bin-width outside the range; bin_width: (rows,). On a line,
    W1 is the area between the two CDFs. Rows with no mass on either side give NaN.
    """
    mass_a = full_a.double().sum(dim=1, keepdim=True)
    mass_b = full_b.double().sum(dim=1, keepdim=True)
    cdf_a = full_a.double().cumsum(dim=1) / mass_a
    cdf_b = full_b.double().cumsum(dim=1) / mass_b
    return (cdf_a - cdf_b)[:, :-1].abs().sum(dim=1) * bin_width.double()
