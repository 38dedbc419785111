"""Drift on fixed data: each layer's activation input on the same held-out examples every
frame, so the change between frames comes from the parameters, not from which batch was drawn.

The batch-based drift (probes.Probe) compares two different mini-batches, and between two
batches under the same weights their histograms already differ (its noise floor); pooling
every unit into one histogram hides per-unit shift as well. Here, per layer and variant:

- the probe set (a fixed sample of the test split) passes through the model in training
  mode, normalised with its own statistics, inside restoring_state (no buffer moves, noisy
  BN's generator put back);
- per unit, the 1-Wasserstein distance to the previous frame's values on the same examples:
  for two samples of equal size it is the mean absolute difference of the sorted values;
  its median and 90th percentile over units, and the pooled W1 of all units together (over
  the set's first 64 examples, to keep the sort cheap); and
  the per-unit median against the first frame (how far the layer moved since it started);
- the noise floor: the per-unit W1 between the two halves of the probe set under the same
  weights (what two different batches of that size differ by with nothing trained);
- the pooled std of the layer's values, to read every number as a share of the spread;
- one typical unit, as Ioffe & Szegedy's Figure 1 (b, c) shows "a typical sigmoid": the
  unit whose spread on the set was the median of the layer's at the variant's first
  frame, kept for the run, and its 15th, 50th and 85th percentiles over the set.

A conv layer's unit is a channel: its values are every position of the set's first examples,
up to UNIT_VALUES of them (the halves and the pooled sample still split by example).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from covshift.wire import Json

from .histogram import interpolate_sorted
from .hooks import hooked
from .models import Network
from .norms import channel_rows, restoring_state
from .packing import Filled, Packer, significant

# Enough examples that the halves' per-unit floor is small, few enough to cost little
# (one extra forward of this many rows per variant per frame).
PROBE_SIZE = 256
# The pooled W1 sorts every value of a layer at once; on the first this many examples of
# the set (still the same examples every frame) it costs a quarter of all of them.
POOLED_EXAMPLES = 64
# A conv channel has a value per position of every example: its per-unit W1 and floor take
# the first examples up to this many values (8x8 maps: 64 examples; an MLP's 256 examples
# are all kept). Sorting 4x as many costs ~25x as much (0.23 s against 0.009 s per layer of
# 100 channels), and the change between frames is still measured on the same values.
UNIT_VALUES = 4096
UNIT_QUANTILE = 0.9
# The typical unit's percentiles, as the paper's Figure 1 (b, c) draws them.
TYPICAL_PERCENTILES = (15, 50, 85)


def probe_set(x_test: torch.Tensor, seed: int, size: int = PROBE_SIZE) -> torch.Tensor:
    """A fixed, seeded sample of held-out examples (the whole test split if it is smaller)."""
    generator = torch.Generator().manual_seed(seed + 7919)
    pick = torch.randperm(len(x_test), generator=generator)[: min(size, len(x_test))]
    return x_test[pick.to(x_test.device)]


def sorted_w1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row (a unit), W1 between two equal-size samples given sorted along axis 1."""
    result: np.ndarray = np.abs(a - b).mean(axis=1)
    return result


def sorted_quantiles(rows: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles of each row of a row-sorted array, as np.quantile's default (linear) method
    computes them; (rows, len(q)). For a few rows of a hundred values np.quantile's own
    overhead costs more than the numbers."""
    at = np.asarray(q, dtype=np.float64) * (rows.shape[-1] - 1)
    result = interpolate_sorted(rows, at)
    # As np.quantile: a row with a NaN (sorted to its end) has NaN quantiles.
    result[np.isnan(rows[..., -1])] = np.nan
    return result


@contextmanager
def activation_inputs(model: Network) -> Iterator[list[torch.Tensor]]:
    """Each hidden layer's activation input of the forward run inside the block, as
    (values, units). Only these are kept: a conv layer's other taps on the whole probe set
    would cost as much memory again as a training batch's."""
    inputs: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple[torch.Tensor, ...], output: object) -> None:
        inputs.append(channel_rows(args[0].detach()))

    with hooked((block.act, keep) for block in model.hidden()):
        yield inputs


class FixedDataDrift:
    """Measures every layer's activation input on the probe set, frame after frame."""

    def __init__(self, x_probe: torch.Tensor) -> None:
        self.x_probe = x_probe
        # (variant, layer) -> the previous frame's values, each unit's row sorted
        self._previous: dict[tuple[str, int], np.ndarray] = {}
        # (variant, layer) -> the previous frame's pooled values (first examples), sorted
        self._previous_pooled: dict[tuple[str, int], np.ndarray] = {}
        # (variant, layer) -> the first frame's values, each unit's row sorted
        self._first: dict[tuple[str, int], np.ndarray] = {}
        # (variant, layer) -> the typical unit, chosen at the variant's first frame
        self._typical: dict[tuple[str, int], int] = {}

    @torch.no_grad()
    def measure(self, models: dict[str, Network], packer: Packer) -> dict[str, list[Json]]:
        """Per variant, one entry per hidden layer, as plain numbers (w1 fields null on the
        first frame of a variant). Sorting is NumPy's on the host: for these shapes it is
        ~20x faster than torch.sort on a CPU."""
        result: dict[str, list[Json]] = {}
        examples = self.x_probe.shape[0]
        for variant, model in models.items():
            with restoring_state(model), activation_inputs(model) as inputs:
                model.train()
                model(self.x_probe)
            # One transfer per variant (a sync point on CUDA), then one array per layer.
            sizes = [rows.numel() for rows in inputs]
            flat = torch.cat([rows.reshape(-1) for rows in inputs]).float().cpu().numpy()
            values = [
                part.reshape(-1, rows.shape[1])
                for part, rows in zip(np.split(flat, np.cumsum(sizes)[:-1]), inputs, strict=True)
            ]
            entries = [self._layer((variant, k), v, examples) for k, v in enumerate(values)]
            numbers = [x for e in entries for x in e.values() if isinstance(x, float)]
            numbers += [x for e in entries for x in e["unit_percentiles"]]
            packer.unpacked_nonfinite |= not bool(np.isfinite(numbers).all())
            result[variant] = [
                Filled((k, _significant(x)) for k, x in entry.items()) for entry in entries
            ]
        return result

    def _layer(self, key: tuple[str, int], values: np.ndarray, examples: int) -> Filled:
        """values: (examples x positions, units), example by example."""
        positions = values.shape[0] // examples
        pooled = np.sort(values[: POOLED_EXAMPLES * positions].reshape(-1))
        spread = float(values.std())
        examples = min(examples, max(2, UNIT_VALUES // positions))
        # Unit by unit, each unit's values in a row: NumPy sorts contiguous rows fastest.
        units = np.ascontiguousarray(values[: examples * positions].T)
        per_unit = np.sort(units, axis=1)
        half = examples // 2 * positions
        halves = np.sort(units[:, : 2 * half].reshape(-1, 2, half), axis=2)
        previous = self._previous.get(key)
        first = self._first.get(key, per_unit)
        # The floor and, from the second frame, the per-unit changes to the previous and to
        # the first frame: their medians and 90th percentiles over units, in one sort.
        changes = [sorted_w1(halves[:, 0], halves[:, 1])]
        if previous is not None:
            changes += [sorted_w1(per_unit, previous), sorted_w1(per_unit, first)]
        quantiles = sorted_quantiles(np.sort(np.stack(changes), axis=1), [0.5, UNIT_QUANTILE])
        entry = Filled(
            floor=float(quantiles[0, 0]),
            std=spread,
            w1=None,
            unit_median=None,
            unit_p90=None,
            unit_median_start=None,
        )
        if previous is not None:
            entry.update(
                w1=float(np.abs(pooled - self._previous_pooled[key]).mean()),
                unit_median=float(quantiles[1, 0]),
                unit_p90=float(quantiles[1, 1]),
                unit_median_start=float(quantiles[2, 0]),
            )
        if key not in self._typical:
            spread = per_unit.std(axis=1)
            self._typical[key] = int(np.argsort(spread, kind="stable")[(len(spread) - 1) // 2])
        unit = self._typical[key]
        percentiles = sorted_quantiles(per_unit[unit], [p / 100 for p in TYPICAL_PERCENTILES])
        entry.update(unit=unit, unit_percentiles=[float(p) for p in percentiles])
        self._first.setdefault(key, per_unit)
        self._previous[key] = per_unit
        self._previous_pooled[key] = pooled
        return entry

    def forget(self, variant: str) -> None:
        """A variant that stopped training (skipped, diverged) starts over when it resumes."""
        for key in [k for k in self._previous if k[0] == variant]:
            del self._previous[key]
            del self._previous_pooled[key]
            del self._first[key]
            self._typical.pop(key, None)


def _significant(value: Json) -> Json:
    """A number (or each of a list's) to 9 significant digits; an index stays an int."""
    if isinstance(value, list):
        return [significant(x) for x in value]
    return significant(value) if isinstance(value, float) else value
