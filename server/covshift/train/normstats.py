"""Each layer's normalizer state for a frame: batch vs running statistics, γ and β, r and d."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from covshift.wire import Json

from .models import Block
from .norms import BatchRenorm, GhostBatchNorm, batch_moments, channel_rows, has_running_stats
from .packing import Packer


def norm_templates(block: Block, taps: dict[str, torch.Tensor], packer: Packer) -> dict[str, Json]:
    """The layer's "bn" entry (null without running statistics) and, where it applies,
    "affine" (LayerNorm, GroupNorm, RMSNorm) or "weight_norm" (WeightNorm's per-unit g)."""
    norm = block.norm
    result: dict[str, Json] = {"bn": None}
    if isinstance(norm, _BatchNorm) and has_running_stats(norm):
        result["bn"] = _bn_template(block, norm, taps, packer)
    elif norm is not None:
        result["affine"] = _affine_template(norm, packer)
    parametrizations = getattr(block.linear, "parametrizations", None)
    if parametrizations is not None:
        g = parametrizations.weight.original0.detach().reshape(-1)
        result["weight_norm"] = {"g": packer.add(g)}
    return result


def _affine_template(norm: nn.Module, packer: Packer) -> dict[str, Json]:
    """γ and β of a per-example normalizer; β is null for one without a shift (RMSNorm)."""
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if not isinstance(weight, torch.Tensor):  # a normalizer without γ (affine off)
        return {"gamma": None, "beta": None}
    if not isinstance(bias, torch.Tensor):
        return {"gamma": packer.add(weight.detach()), "beta": None}
    rows = packer.add(torch.stack([weight.detach(), bias.detach()]))
    return {"gamma": rows.row(0), "beta": rows.row(1)}


def _bn_template(
    block: Block, norm: _BatchNorm, taps: dict[str, torch.Tensor], packer: Packer
) -> dict[str, Json]:
    """BN's per-channel state. batch_mean and batch_var are over the whole batch (also for
    ghost BN), per channel over N x H x W for conv maps; batch_var is unbiased (n = N x H x W
    values per channel): for BN the series running_var averages. Ghost BN adds
    ghost_mean and ghost_var, the mean over its ghost batches of their means and unbiased
    variances: the series its running statistics average."""
    assert has_running_stats(norm)
    assert norm.running_mean is not None and norm.running_var is not None
    norm_input = taps["linear_out"] if block.placement == "before" else taps["act_output"]
    values = channel_rows(norm_input)
    batch_mean = values.mean(dim=0)
    centred = values - batch_mean
    # Written out because Tensor.var along dim 0 is ~4x slower on small CPU tensors.
    batch_var = (centred * centred).sum(dim=0) / (values.shape[0] - 1)
    rows = [batch_mean, batch_var, norm.running_mean, norm.running_var]
    names = ["batch_mean", "batch_var", "running_mean", "running_var"]
    if norm.weight is not None and norm.bias is not None:  # BN with affine off has no γ, β
        rows += [norm.weight.detach(), norm.bias.detach()]
        names += ["gamma", "beta"]
    if isinstance(norm, GhostBatchNorm):
        # Ghost BN's running statistics average the ghost batches' own moments, not the whole
        # batch's: these are exactly the values this step's update moved them towards.
        ghost_mean, ghost_var = batch_moments(norm, norm_input)
        rows += [ghost_mean.mean(dim=0), ghost_var.mean(dim=0)]
        names += ["ghost_mean", "ghost_var"]
    renorm = norm if isinstance(norm, BatchRenorm) else None
    if renorm is not None and renorm.last_r is not None and renorm.last_d is not None:
        # r and d of this batch's forward (the calibration forward sets them before step 0).
        rows += [renorm.last_r, renorm.last_d]
        names += ["r", "d"]
    channels = packer.add(torch.stack(rows))
    template: dict[str, Json] = {name: channels.row(i) for i, name in enumerate(names)}
    if renorm is not None and renorm.last_limits is not None:
        limits = packer.add(renorm.last_limits)
        template["r_max"], template["d_max"] = limits.row(0), limits.row(1)
    return template
