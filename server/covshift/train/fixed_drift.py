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
  its median and 90th percentile over units, and the pooled W1 of all units together; and
  the per-unit median against the first frame (how far the layer moved since it started);
- the noise floor: the per-unit W1 between the two halves of the probe set under the same
  weights (what two different batches of that size differ by with nothing trained);
- the pooled std of the layer's values, to read every number as a share of the spread.
"""

from __future__ import annotations

import torch

from covshift.wire import Json

from .models import MLP
from .norms import restoring_state
from .packing import Packer
from .probes import capture

# Enough examples that the halves' per-unit floor is small, few enough to cost little
# (one extra forward of this many rows per variant per frame).
PROBE_SIZE = 256
UNIT_QUANTILE = 0.9


def probe_set(x_test: torch.Tensor, seed: int, size: int = PROBE_SIZE) -> torch.Tensor:
    """A fixed, seeded sample of held-out examples (the whole test split if it is smaller)."""
    generator = torch.Generator().manual_seed(seed + 7919)
    pick = torch.randperm(len(x_test), generator=generator)[: min(size, len(x_test))]
    return x_test[pick.to(x_test.device)]


def sorted_w1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per column, W1 between two equal-size samples given sorted along dim 0."""
    return (a - b).abs().mean(dim=0)


class FixedDataDrift:
    """Measures every layer's activation input on the probe set, frame after frame."""

    def __init__(self, x_probe: torch.Tensor) -> None:
        self.x_probe = x_probe
        # (variant, layer) -> the previous frame's values, each unit's column sorted
        self._previous: dict[tuple[str, int], torch.Tensor] = {}
        # (variant, layer) -> the previous frame's values of all units, sorted
        self._previous_pooled: dict[tuple[str, int], torch.Tensor] = {}
        # (variant, layer) -> the first frame's values, each unit's column sorted
        self._first: dict[tuple[str, int], torch.Tensor] = {}

    @torch.no_grad()
    def measure(self, models: dict[str, MLP], packer: Packer) -> dict[str, list[Json]]:
        """Per variant, one entry per hidden layer (Slots in packer; w1 fields null on the
        first frame of a variant)."""
        result: dict[str, list[Json]] = {}
        for variant, model in models.items():
            with restoring_state(model), capture(model) as layers:
                model.train()
                model(self.x_probe)
            result[variant] = [
                self._layer((variant, k), layer["act_input"], packer)
                for k, layer in enumerate(layers)
            ]
        return result

    def _layer(self, key: tuple[str, int], values: torch.Tensor, packer: Packer) -> Json:
        per_unit = torch.sort(values.float(), dim=0).values
        pooled = torch.sort(values.float().reshape(-1)).values
        half = values.shape[0] // 2
        halves = torch.sort(values[: 2 * half].float().reshape(2, half, -1), dim=1).values
        floor = torch.quantile(sorted_w1(halves[0], halves[1]), 0.5)
        entry: dict[str, Json] = {
            "floor": packer.add(floor),
            "std": packer.add(pooled.std(correction=0)),
            "w1": None,
            "unit_median": None,
            "unit_p90": None,
            "unit_median_start": None,
        }
        previous = self._previous.get(key)
        if previous is not None:
            units = sorted_w1(per_unit, previous)
            entry["w1"] = packer.add((pooled - self._previous_pooled[key]).abs().mean())
            entry["unit_median"] = packer.add(torch.quantile(units, 0.5))
            entry["unit_p90"] = packer.add(torch.quantile(units, UNIT_QUANTILE))
            start = sorted_w1(per_unit, self._first[key])
            entry["unit_median_start"] = packer.add(torch.quantile(start, 0.5))
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
