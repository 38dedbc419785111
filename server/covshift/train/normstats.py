"""Each layer's normalizer state for a frame: batch vs running statistics, γ and β, r and d."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from covshift.wire import Json

from .models import Block
from .norms import BatchRenorm, GhostBatchNorm, batch_moments, channel_rows, has_running_stats
from .packing import Packer


def norm_templates(
    blocks: Sequence[Block], layers: Sequence[dict[str, torch.Tensor]], packer: Packer
) -> list[dict[str, Json]]:
    """Per layer, its "bn" entry (null without running statistics) and, where it applies,
    "affine" (LayerNorm, GroupNorm, RMSNorm) or "weight_norm" (WeightNorm's per-unit g)."""
    bn = _bn_templates(blocks, layers, packer)
    result: list[dict[str, Json]] = []
    for k, block in enumerate(blocks):
        entry: dict[str, Json] = {"bn": bn.get(k)}
        if k not in bn and block.norm is not None:
            entry["affine"] = _affine_template(block.norm, packer)
        parametrizations = getattr(block.linear, "parametrizations", None)
        if parametrizations is not None:
            g = parametrizations.weight.original0.detach().reshape(-1)
            entry["weight_norm"] = {"g": packer.add(g)}
        result.append(entry)
    return result


def _bn_templates(
    blocks: Sequence[Block], layers: Sequence[dict[str, torch.Tensor]], packer: Packer
) -> dict[int, dict[str, Json]]:
    """The "bn" entry of each layer whose normalizer keeps running statistics, by layer.
    Layers with the same rows over as many channels are packed as one tensor; the batch
    moments, taken on the host, are written in when the frame resolves."""
    norms = {
        k: block.norm
        for k, block in enumerate(blocks)
        if isinstance(block.norm, _BatchNorm) and has_running_stats(block.norm)
    }
    moments = channel_moments([_norm_input(blocks[k], layers[k]) for k in norms])
    states = {k: _bn_rows(blocks[k], norm, layers[k]) for k, norm in norms.items()}
    groups: dict[tuple[tuple[str, ...], torch.Size], list[int]] = {}
    for k, state in states.items():
        groups.setdefault((tuple(state), state["running_mean"].shape), []).append(k)
    bn: dict[int, dict[str, Json]] = {k: {"batch_mean": None, "batch_var": None} for k in norms}
    for (names, _), members in groups.items():
        # torch.stack makes a new tensor: nothing can change it before the frame resolves.
        rows = torch.stack([row for k in members for row in states[k].values()])
        channels = packer.add(rows, copy=False)
        for j, k in enumerate(members):
            bn[k].update((name, channels.row(j * len(names) + i)) for i, name in enumerate(names))
    for k, pair in zip(norms, moments, strict=True):
        packer.later(pair, partial(_write_moments, bn[k]))
    for k, norm in norms.items():
        if isinstance(norm, BatchRenorm) and norm.last_limits is not None:
            limits = packer.add(norm.last_limits)
            bn[k]["r_max"], bn[k]["d_max"] = limits.row(0), limits.row(1)
    return bn


def _write_moments(entry: dict[str, Json], pair: Json) -> None:
    assert isinstance(pair, list)
    entry["batch_mean"], entry["batch_var"] = pair


def channel_moments(inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Each input's per-channel batch mean and unbiased variance, over N x H x W for conv
    maps, as one (2, channels) float64 array on the host. Inputs of one shape are reduced
    together: a few calls per frame however many layers, in NumPy, which costs far less per
    call than torch on tensors this small (and float64 costs nothing here)."""
    rows = [channel_rows(x) for x in inputs]
    groups: dict[torch.Size, list[int]] = {}
    for i, layer in enumerate(rows):
        groups.setdefault(layer.shape, []).append(i)
    found: dict[int, np.ndarray] = {}
    for (n, _), members in groups.items():
        # (layers, values, channels) in float64, a fresh array; one transfer per shape on an
        # accelerator
        values = torch.stack([rows[i] for i in members]).detach().cpu().double().numpy()
        mean = values.mean(axis=1)
        centred = np.subtract(values, mean[:, None], out=values)
        # Squared in place and summed: np.einsum would hand this to BLAS, whose threads
        # then spin on the core the training process runs on.
        var = np.square(centred, out=centred).sum(axis=1) / (n - 1)
        pairs = np.stack([mean, var], axis=1)  # (layers, 2, channels)
        found.update(zip(members, pairs, strict=True))
    return [found[i] for i in range(len(rows))]


def _norm_input(block: Block, taps: dict[str, torch.Tensor]) -> torch.Tensor:
    return taps["linear_out"] if block.placement == "before" else taps["act_output"]


def _affine_template(norm: nn.Module, packer: Packer) -> dict[str, Json]:
    """γ and β of a per-example normalizer; β is null for one without a shift (RMSNorm)."""
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if not isinstance(weight, torch.Tensor):  # a normalizer without γ (affine off)
        return {"gamma": None, "beta": None}
    if not isinstance(bias, torch.Tensor):
        return {"gamma": packer.add(weight.detach()), "beta": None}
    rows = packer.add(torch.stack([weight.detach(), bias.detach()]))
    return {"gamma": rows.row(0), "beta": rows.row(1)}


def _bn_rows(
    block: Block, norm: _BatchNorm, taps: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """BN's per-channel state by name, all but the batch moments. Those (channel_moments) are
    over the whole batch, also for ghost BN, per channel over N x H x W for conv maps;
    batch_var is unbiased (n = N x H x W values per channel): for BN the series running_var
    averages. Ghost BN adds ghost_mean and ghost_var, the mean over its ghost batches of
    their means and unbiased variances: the series its running statistics average. Batch
    Renorm adds this batch's r and d."""
    assert norm.running_mean is not None and norm.running_var is not None
    rows = {"running_mean": norm.running_mean, "running_var": norm.running_var}
    if norm.weight is not None and norm.bias is not None:  # BN with affine off has no γ, β
        rows["gamma"], rows["beta"] = norm.weight.detach(), norm.bias.detach()
    if isinstance(norm, GhostBatchNorm):
        # Ghost BN's running statistics average the ghost batches' own moments, not the whole
        # batch's: these are exactly the values this step's update moved them towards.
        ghost_mean, ghost_var = batch_moments(norm, _norm_input(block, taps))
        rows["ghost_mean"], rows["ghost_var"] = ghost_mean.mean(dim=0), ghost_var.mean(dim=0)
    if isinstance(norm, BatchRenorm) and norm.last_r is not None and norm.last_d is not None:
        # r and d of this batch's forward (the calibration forward sets them before step 0).
        rows["r"], rows["d"] = norm.last_r, norm.last_d
    return rows
