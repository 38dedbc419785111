"""Recompute a model's BatchNorm running statistics over data, scoring it before and after.

The fix for stale running statistics (the doctor's stale_running_stats and running_mean_off
findings): one pass of `torch.optim.swa_utils.update_bn` over a loader. That call resets
every BN module's running_mean and running_var, sets its momentum to None for the pass, so
the statistics become the equal-weight (cumulative) average of the batches' means and
unbiased variances rather than an exponential one, then puts each momentum back and the
model's train/eval mode as it was. It runs under torch.no_grad(); γ and β are untouched.
Average over batches, not examples: batches of equal size make it the data's mean.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn


def recalibrate(
    model: nn.Module,
    loader: Iterable[Any],
    evaluate: Callable[[nn.Module], Any] | None = None,
    *,
    copy_model: bool = False,
) -> dict[str, Any]:
    """Recompute model's BN running statistics over loader (batches: tensors, or tuples whose
    first item is the input) in place, or on a deep copy with copy_model=True.

    Returns {"model": the recalibrated model (model itself unless copied), "bn_modules": how
    many BN modules were recomputed, "before": evaluate(model) before, "after": evaluate(...)
    after}; "before" and "after" are None without evaluate. A model without BN is returned
    unchanged, with bn_modules 0."""
    target = copy.deepcopy(model) if copy_model else model
    bn_modules = sum(isinstance(m, _BatchNorm) for m in target.modules())
    before = evaluate(target) if evaluate is not None else None
    update_bn(loader, target)
    after = evaluate(target) if evaluate is not None else None
    return {"model": target, "bn_modules": bn_modules, "before": before, "after": after}
