"""Equal-weight (cumulative) averages of every training batch's BN statistics, beside the EMA.

BN's running statistics are an exponential moving average (momentum m) by default.
With `compare_cumulative` on, the trainer also keeps the plain average of all batch
means and unbiased variances seen so far, so one run can score its test set with
both and show the gap. Off by default: it adds a hook to every training step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .hooks import hooked
from .inference import running_stat_norms
from .models import Network
from .norms import batch_moments


class CumulativeAverages:
    """Running sums of one model's batch statistics, per running-statistics normalizer."""

    def __init__(self, model: Network) -> None:
        self.norms = running_stat_norms(model)
        self.sums: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.batches = 0  # each ghost batch counts as a batch, as BN's own counter does

    @contextmanager
    def tracking(self) -> Iterator[None]:
        """Add the batch statistics of the forward passes run inside the block."""
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []

        def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            mean, var = batch_moments(module, inputs[0].detach())
            seen.append((mean.sum(dim=0), var.sum(dim=0)))
            if len(seen) == 1:
                self.batches += mean.shape[0]

        with hooked((norm, keep) for norm in self.norms):
            yield
        if seen:
            self.sums = (
                seen
                if self.sums is None
                else [
                    (total_mean + mean, total_var + var)
                    for (total_mean, total_var), (mean, var) in zip(self.sums, seen, strict=True)
                ]
            )

    def statistics(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """(mean, var) per normalizer: the average over all batches so far; None before any."""
        if self.sums is None:
            return None
        return [(mean / self.batches, var / self.batches) for mean, var in self.sums]
