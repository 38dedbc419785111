"""Probes: forward hooks that capture each hidden layer's tensors, and their reduction to stats.

Capturing (detach and keep) is separate from reducing (a small dict of numbers).
Hooks live only inside `capture(...)`, which always removes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .frames import Json, Packer
from .histogram import RowStats, make_edges, nice_ceil, reduce_rows, wasserstein1
from .models import MLP, Block

# What a layer exposes, in forward order. x̂ is derived from the norm's input at reduction.
TAPS = ("linear_out", "bn_xhat", "bn_out", "act_input", "act_output")
NORM_TAPS = frozenset({"bn_xhat", "bn_out"})
# Sigmoid/tanh outputs this close to their bounds pass almost no gradient.
SATURATION_MARGIN = 0.01
# x̂ is standardised by construction, so its histogram range is fixed.
XHAT_RANGE = 5.0

Captured = list[dict[str, torch.Tensor]]  # per hidden layer: name -> tensor


@contextmanager
def capture(model: MLP) -> Iterator[Captured]:
    """Record every hidden layer's tensors during the forward passes run inside the block."""
    captured: Captured = [{} for _ in model.hidden()]
    handles = []
    try:
        for store, block in zip(captured, model.hidden(), strict=True):
            handles.append(block.linear.register_forward_hook(_keep_output(store, "linear_out")))
            if block.norm is not None:
                handles.append(block.norm.register_forward_hook(_keep_norm(store)))
            handles.append(block.act.register_forward_hook(_keep_act(store)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _keep_output(store: dict[str, torch.Tensor], name: str) -> Any:
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        store[name] = output.detach()

    return hook


def _keep_norm(store: dict[str, torch.Tensor]) -> Any:
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        store["norm_input"] = inputs[0].detach()
        store["bn_out"] = output.detach()

    return hook


def _keep_act(store: dict[str, torch.Tensor]) -> Any:
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        store["act_input"] = inputs[0].detach()
        store["act_output"] = output.detach()

    return hook


def taps_of(model: MLP) -> tuple[str, ...]:
    """The taps a model exposes (no BN taps without a norm)."""
    has_norm = any(block.norm is not None for block in model.hidden())
    return tuple(tap for tap in TAPS if has_norm or tap not in NORM_TAPS)


def tap_values(model: MLP, layers: Captured) -> list[dict[str, torch.Tensor]]:
    """Per layer, each tap's tensor; x̂ computed from the norm's input with batch statistics."""
    result = []
    for block, store in zip(model.hidden(), layers, strict=True):
        taps = {
            "linear_out": store["linear_out"],
            "act_input": store["act_input"],
            "act_output": store["act_output"],
        }
        if block.norm is not None:
            x = store["norm_input"]
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)  # the variance BN normalizes with in training
            taps["bn_xhat"] = (x - mean) / torch.sqrt(var + block.norm.eps)
            taps["bn_out"] = store["bn_out"]
        result.append(taps)
    return result


class Probe:
    """Reduces captured tensors to per-layer stats over bin edges fixed once per run."""

    def __init__(self, activation: str, bins: int) -> None:
        self.activation = activation
        self.bins = bins
        self.edges: dict[tuple[int, str], torch.Tensor] = {}
        # (variant, layer) -> act_input (full counts, mean, std) at the previous probe
        self._previous: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def calibrate(self, values: dict[str, list[dict[str, torch.Tensor]]]) -> None:
        """Fix every (layer, tap)'s edges from one batch, shared by all variants (same axes)."""
        extent: dict[tuple[int, str], float] = {}
        for layers in values.values():
            for layer, taps in enumerate(layers):
                for tap, tensor in taps.items():
                    finite = tensor[torch.isfinite(tensor)]
                    largest = float(finite.abs().max()) if finite.numel() else 1.0
                    extent[layer, tap] = max(extent.get((layer, tap), 0.0), largest)
        for (layer, tap), largest in extent.items():
            lo, hi = self._range(tap, largest)
            self.edges[layer, tap] = make_edges(lo, hi, self.bins)

    def _range(self, tap: str, largest: float) -> tuple[float, float]:
        if tap == "bn_xhat":
            return -XHAT_RANGE, XHAT_RANGE
        if tap == "act_output" and self.activation == "sigmoid":
            return 0.0, 1.0
        if tap == "act_output" and self.activation == "tanh":
            return -1.0, 1.0
        # Twice the first batch's reach leaves room to watch the distribution move.
        reach = nice_ceil(2.0 * largest)
        if tap == "act_output":  # relu
            return 0.0, reach
        return -reach, reach

    def edges_json(self) -> list[dict[str, list[float]]]:
        layers = 1 + max((layer for layer, _ in self.edges), default=-1)
        return [
            {tap: edges.tolist() for (lay, tap), edges in self.edges.items() if lay == layer}
            for layer in range(layers)
        ]

    def reduce(
        self,
        values: dict[str, list[dict[str, torch.Tensor]]],
        models: dict[str, MLP],
        packer: Packer,
    ) -> dict[str, list[dict[str, Json]]]:
        """Per variant, a list of layer templates whose numbers are Slots in packer."""
        rows: list[tuple[str, int, str]] = []
        tensors: list[torch.Tensor] = []
        for variant, layers in values.items():
            for layer, taps in enumerate(layers):
                for tap, tensor in taps.items():
                    rows.append((variant, layer, tap))
                    tensors.append(tensor.reshape(-1))
        if not rows:
            return {}
        edges = torch.stack([self.edges[layer, tap] for _, layer, tap in rows]).to(tensors[0].device)
        stats = reduce_rows(torch.stack(tensors), edges)
        index = {row: i for i, row in enumerate(rows)}
        full = stats.full_counts()

        result: dict[str, list[dict[str, Json]]] = {}
        for variant, layers in values.items():
            result[variant] = []
            for layer, taps in enumerate(layers):
                tap_json = {tap: _tap_template(stats, index[variant, layer, tap], packer) for tap in taps}
                block = models[variant].hidden()[layer]
                entry: dict[str, Json] = {"taps": tap_json}
                entry.update(self._activation_stats(taps["act_output"], packer))
                entry["drift"] = self._drift(variant, layer, stats, full, index, packer)
                entry["bn"] = _bn_template(block, taps, packer) if block.norm is not None else None
                result[variant].append(entry)
        return result

    def _activation_stats(self, output: torch.Tensor, packer: Packer) -> dict[str, Json]:
        if self.activation == "relu":
            dead = output <= 0
            return {
                "dead": packer.add(dead.float().mean()),
                "dead_units": packer.add(dead.all(dim=0).float().mean()),
            }
        low, high = (0.0, 1.0) if self.activation == "sigmoid" else (-1.0, 1.0)
        saturated = (output < low + SATURATION_MARGIN) | (output > high - SATURATION_MARGIN)
        return {"saturated": packer.add(saturated.float().mean())}

    def _drift(
        self,
        variant: str,
        layer: int,
        stats: RowStats,
        full: torch.Tensor,
        index: dict[tuple[str, int, str], int],
        packer: Packer,
    ) -> Json:
        """Change of the activation input's distribution since this layer's previous probe."""
        i = index[variant, layer, "act_input"]
        now = (full[i], stats.mean[i], stats.std[i])
        before = self._previous.get((variant, layer))
        self._previous[variant, layer] = now
        if before is None:
            return None
        edges = self.edges[layer, "act_input"]
        width = (edges[1] - edges[0]).reshape(1)
        w1 = wasserstein1(before[0][None], now[0][None], width)[0]
        return {
            "w1": packer.add(w1),
            "dmean": packer.add((now[1] - before[1]).abs()),
            "dstd": packer.add((now[2] - before[2]).abs()),
        }


def _tap_template(stats: RowStats, i: int, packer: Packer) -> dict[str, Json]:
    return {
        "counts": packer.add(stats.counts[i]),
        "underflow": packer.add(stats.underflow[i]),
        "overflow": packer.add(stats.overflow[i]),
        "nonfinite": packer.add(stats.nonfinite[i]),
        "percentiles": packer.add(stats.percentiles[i]),
        "mean": packer.add(stats.mean[i]),
        "std": packer.add(stats.std[i]),
        "min": packer.add(stats.min[i]),
        "max": packer.add(stats.max[i]),
    }


def _bn_template(block: Block, taps: dict[str, torch.Tensor], packer: Packer) -> dict[str, Json]:
    """BN's per-channel state. batch_var is unbiased: the series running_var averages."""
    norm = block.norm
    assert norm is not None and norm.running_mean is not None and norm.running_var is not None
    norm_input = taps["linear_out"] if block.placement == "before" else taps["act_output"]
    return {
        "batch_mean": packer.add(norm_input.mean(dim=0)),
        "batch_var": packer.add(norm_input.var(dim=0, unbiased=True)),
        "running_mean": packer.add(norm.running_mean),
        "running_var": packer.add(norm.running_var),
        "gamma": packer.add(norm.weight),
        "beta": packer.add(norm.bias),
    }
