"""Probes: forward hooks that capture each hidden layer's tensors, and their reduction to stats.

Capturing (detach and keep) is separate from reducing (a small dict of numbers).
Hooks live only inside `capture(...)`, which always removes them. A layer's tensors may
be (N, C) or conv maps (N, C, H, W): histograms and percentiles pool all of a layer's
values; per-unit numbers are per channel, over N x H x W.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch
from torch import nn

from covshift.wire import Json

from .histogram import Bins, RowStats, make_edges, nice_ceil, reduce_ragged, wasserstein1
from .hooks import Hook, hooked, tensor_key
from .models import ACTIVATIONS, Network
from .norms import channel_rows, normalized
from .normstats import norm_templates
from .packing import Filled, Packer, significant

# What a layer exposes, in forward order. x̂ is derived from the norm's input at reduction.
TAPS = ("linear_out", "norm_xhat", "norm_out", "act_input", "act_output")
NORM_TAPS = frozenset({"norm_xhat", "norm_out"})
# Sigmoid/tanh outputs this close to their bounds pass almost no gradient.
SATURATION_MARGIN = 0.01
# The activations with bounded outputs, whose saturated fraction a frame reports.
SATURATING: dict[type[nn.Module], tuple[float, float]] = {
    nn.Sigmoid: (0.0, 1.0),
    nn.Tanh: (-1.0, 1.0),
}
# The activations that pass (almost) nothing below 0, whose dead fraction (outputs <= 0) a
# frame reports.
RECTIFYING: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU)
# x̂ is standardised by construction, so its histogram range is fixed.
XHAT_RANGE = 5.0

Captured = list[dict[str, torch.Tensor]]  # per hidden layer: name -> tensor


@contextmanager
def capture(model: Network) -> Iterator[Captured]:
    """Record every hidden layer's tensors during the forward passes run inside the block."""
    captured: Captured = [{} for _ in model.hidden()]
    hooks: list[tuple[nn.Module, Hook]] = []
    for store, block in zip(captured, model.hidden(), strict=True):
        hooks.append((block.linear, _keep_output(store, "linear_out")))
        if block.norm is not None:
            hooks.append((block.norm, _keep_norm(store)))
            xhat = getattr(block.norm, "xhat", None)
            if isinstance(xhat, nn.Module):  # our normalizers hand out x̂ as computed
                hooks.append((xhat, _keep_output(store, "xhat")))
        hooks.append((block.act, _keep_act(store)))
    with hooked(hooks):
        yield captured


def _keep_output(store: dict[str, torch.Tensor], name: str) -> Hook:
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        store[name] = output.detach()

    return hook


def _keep_norm(store: dict[str, torch.Tensor]) -> Hook:
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        store["norm_input"] = inputs[0].detach()
        store["norm_out"] = output.detach()

    return hook


def _keep_act(store: dict[str, torch.Tensor]) -> Hook:
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        store["act_input"] = inputs[0].detach()
        store["act_output"] = output.detach()

    return hook


def taps_of(model: Network) -> tuple[str, ...]:
    """The taps a model exposes (no BN taps without a norm)."""
    has_norm = any(block.norm is not None for block in model.hidden())
    return tuple(tap for tap in TAPS if has_norm or tap not in NORM_TAPS)


def tap_values(model: Network, layers: Captured) -> list[dict[str, torch.Tensor]]:
    """Per layer, each tap's tensor. x̂ is the normalizer's own when it hands it out (Batch
    Renorm, ghost BN), else recomputed from its input: for BN (x - batch mean) /
    sqrt(biased batch variance + eps), for LayerNorm and GroupNorm the same per example
    (per group)."""
    result = []
    for block, store in zip(model.hidden(), layers, strict=True):
        taps = {
            "linear_out": store["linear_out"],
            "act_input": store["act_input"],
            "act_output": store["act_output"],
        }
        if block.norm is not None:
            xhat = store.get("xhat")
            taps["norm_xhat"] = (
                normalized(block.norm, store["norm_input"]) if xhat is None else xhat
            )
            taps["norm_out"] = store["norm_out"]
        result.append(taps)
    return result


def saturation_bounds(act: nn.Module | None) -> tuple[float, float] | None:
    """The output bounds of a saturating activation (sigmoid, tanh), else None."""
    for kind, bounds in SATURATING.items():
        if isinstance(act, kind):
            return bounds
    return None


def is_rectifying(act: nn.Module | None) -> bool:
    """Whether the activation zeroes (or nearly) what is below 0: its dead fraction counts."""
    return isinstance(act, RECTIFYING)


class Probe:
    """Reduces captured tensors to per-layer stats over bin edges fixed once per run.

    Each layer's activation is read from its block (`block.act`); `activation` (a config
    name) stands in for it where calibrate is given no models."""

    def __init__(self, activation: str, bins: int, drift_window: int = 10) -> None:
        self.activation = activation
        self.bins = bins
        self.drift_window = drift_window
        # (variant, layer, tap) -> its fixed bin edges; (variant, layer) -> act_input's width
        self.edges: dict[tuple[str, int, str], torch.Tensor] = {}
        self._widths: dict[tuple[str, int], float] = {}
        # the ids of a frame's stats rows' edges -> those rows as Bins (made once, not per frame)
        self._bins: dict[tuple[int, ...], Bins] = {}
        # (variant, layer) -> act_input (full counts, [mean, std]) at the previous probe
        self._previous: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        # (variant, layer) -> act_input full counts at its first probe (step 0 unless skipped)
        self._first: dict[tuple[str, int], np.ndarray] = {}
        # (variant, layer) -> act_input full counts of its last `drift_window` probes, oldest
        # first; bounded, so a long run keeps at most drift_window histograms per layer
        self._window: dict[tuple[str, int], deque[np.ndarray]] = {}

    def calibrate(
        self,
        values: dict[str, list[dict[str, torch.Tensor]]],
        models: dict[str, Network] | None = None,
    ) -> None:
        """Fix every variant's (layer, tap) edges from one batch of its own, so no variant's
        outliers flatten another's picture (the page overlays them on one display range).
        The act_output range follows each layer's activation, from `models` when given."""
        fallback = ACTIVATIONS[self.activation]() if self.activation in ACTIVATIONS else None
        # Equal ranges share one edges tensor, so a tensor behind two taps of one range
        # (plain's linear_out and act_input) is measured once.
        made: dict[tuple[float, float], torch.Tensor] = {}
        for variant, layers in values.items():
            model = (models or {}).get(variant)
            blocks = model.hidden() if model is not None else []
            for layer, taps in enumerate(layers):
                act = blocks[layer].act if layer < len(blocks) else fallback
                for tap, tensor in taps.items():
                    finite = tensor[torch.isfinite(tensor)]
                    largest = float(finite.abs().max()) if finite.numel() else 1.0
                    lo, hi = self._range(tap, largest, act)
                    if (lo, hi) not in made:
                        made[lo, hi] = make_edges(lo, hi, self.bins)
                    self.edges[variant, layer, tap] = made[lo, hi]
        self._bins.clear()  # keyed on ids of edges this replaced
        # each layer's act_input bin width, for the drift's W1
        self._widths = {
            (variant, layer): float(edges[1] - edges[0])
            for (variant, layer, tap), edges in self.edges.items()
            if tap == "act_input"
        }

    def _range(self, tap: str, largest: float, act: nn.Module | None) -> tuple[float, float]:
        if tap == "norm_xhat":
            return -XHAT_RANGE, XHAT_RANGE
        bounds = saturation_bounds(act)
        if tap == "act_output" and bounds is not None:
            return bounds
        # Twice the first batch's reach leaves room to watch the distribution move.
        reach = nice_ceil(2.0 * largest)
        if tap == "act_output" and isinstance(act, nn.ReLU):
            return 0.0, reach
        return -reach, reach

    def edges_json(self, variant: str) -> list[dict[str, list[float]]]:
        """One variant's edges, per layer {tap: edges} (the hello's `variant_edges`)."""
        layers = 1 + max((layer for v, layer, _ in self.edges if v == variant), default=-1)
        return [
            {
                tap: edges.tolist()
                for (v, lay, tap), edges in self.edges.items()
                if v == variant and lay == layer
            }
            for layer in range(layers)
        ]

    def reduce(
        self,
        values: dict[str, list[dict[str, torch.Tensor]]],
        models: dict[str, Network],
        packer: Packer,
    ) -> dict[str, list[dict[str, Json]]]:
        """Per variant, a list of layer templates whose numbers are Slots in packer."""
        rows: list[tuple[str, int, str]] = [
            (variant, layer, tap)
            for variant, layers in values.items()
            for layer, taps in enumerate(layers)
            for tap in taps
        ]
        if not rows:
            return {}
        # One tensor can sit behind several taps (plain's act_input is its linear_out, BN's
        # is norm_out): each distinct tensor is sorted once, and measured once over each
        # distinct edges tensor. Layers may differ in size (pooling), so rows are reduced in
        # groups of one length.
        unique: dict[tuple[object, ...], int] = {}
        tensors: list[torch.Tensor] = []
        measured: dict[tuple[int, int], int] = {}  # (tensor, id of its edges) -> stats row
        source: list[int] = []  # stats row -> its tensor
        edges: list[torch.Tensor] = []  # stats row -> its edges
        index: dict[tuple[str, int, str], int] = {}  # (variant, layer, tap) -> stats row
        for row in rows:
            v, layer, tap = row
            tensor = values[v][layer][tap]
            t = unique.setdefault(tensor_key(tensor), len(tensors))
            if t == len(tensors):
                tensors.append(tensor)
            row_edges = self.edges[row]
            index[row] = measured.setdefault((t, id(row_edges)), len(source))
            if index[row] == len(source):
                source.append(t)
                edges.append(row_edges)
        key = tuple(map(id, edges))
        bins = self._bins.get(key)
        if bins is None:
            bins = self._bins[key] = Bins.from_edges(torch.stack(edges))
        stats = reduce_ragged(tensors, bins, source)
        taps = _tap_dicts(stats, packer)

        layer_keys = [(v, layer) for v, layer, tap in rows if tap == "act_input"]
        output_rows = [index[v, layer, "act_output"] for v, layer in layer_keys]
        blocks = {variant: models[variant].hidden() for variant in values}
        acts = [blocks[v][layer].act for v, layer in layer_keys]
        outputs = [values[v][layer]["act_output"] for v, layer in layer_keys]
        activation = _activation_stats(stats, output_rows, outputs, acts, packer)
        drift = self._drift(
            layer_keys, [index[v, layer, "act_input"] for v, layer in layer_keys], stats, packer
        )

        norms = {
            variant: norm_templates(blocks[variant], values[variant], packer) for variant in values
        }
        result: dict[str, list[dict[str, Json]]] = {variant: [] for variant in values}
        for k, (variant, layer) in enumerate(layer_keys):
            names = values[variant][layer]
            # the tap dicts hold plain numbers: resolving the frame passes over them
            entry: dict[str, Json] = {
                "taps": Filled((tap, taps[index[variant, layer, tap]]) for tap in names)
            }
            entry.update(activation[k])
            entry["drift"] = drift.get((variant, layer))
            entry.update(norms[variant][layer])
            result[variant].append(entry)
        return result

    def _drift(
        self,
        layer_keys: list[tuple[str, int]],
        rows: list[int],
        stats: RowStats,
        packer: Packer,
    ) -> dict[tuple[str, int], Json]:
        """Change of each layer's activation-input distribution since its previous probe.
        RowStats live on the host, so this is NumPy on views of them: no sync, few calls."""
        full = stats.cells[rows]
        now = np.stack([stats.mean[rows], stats.std[rows]], axis=1)
        seen = [k for k, key in enumerate(layer_keys) if key in self._previous]
        result: dict[tuple[str, int], Json] = {}
        if seen:
            keys = [layer_keys[k] for k in seen]
            widths = np.array([self._widths[key] for key in keys])
            # One call for all three comparisons: against the previous probe, the first probe
            # and the probe drift_window frames back (or the oldest kept while fewer exist).
            w1 = wasserstein1(
                np.array(
                    [
                        [self._previous[key][0] for key in keys],
                        [self._first[key] for key in keys],
                        [self._window[key][0] for key in keys],
                    ]
                ),
                full[seen],
                widths,
            )
            change = np.abs(now[seen] - np.stack([self._previous[key][1] for key in keys]))
            names = ("w1", "dmean", "dstd", "w1_start", "w1_window")
            drifts = [Filled.fromkeys(names) for _ in keys]
            result.update(zip(keys, drifts, strict=True))

            def fill(numbers: Json) -> None:  # when the frame resolves
                assert isinstance(numbers, list)
                for drift, row in zip(drifts, numbers, strict=True):
                    drift.update(zip(names, row, strict=True))

            packer.later(np.column_stack([w1[0], change, w1[1], w1[2]]), fill)
        for k, key in enumerate(layer_keys):
            self._previous[key] = (full[k], now[k])
            self._first.setdefault(key, full[k])
            self._window.setdefault(key, deque(maxlen=self.drift_window)).append(full[k])
        return result


def _activation_stats(
    stats: RowStats,
    output_rows: list[int],
    outputs: list[torch.Tensor],
    acts: list[nn.Module],
    packer: Packer,
) -> list[dict[str, Json]]:
    """Per layer, from its output: the saturated fraction (sigmoid, tanh), or the dead
    fraction and the share of units (channels) dead for the whole batch (ReLU and its
    kin), or nothing for other activations. Counted in the sorted rows, compared in
    float32 as the tensors are."""
    result: list[dict[str, Json]] = [{} for _ in outputs]
    nonfinite = stats.nonfinite
    at_most_zero = np.nextafter(np.float32(0), np.float32(1))  # below it: v <= 0
    dead_layers = [k for k, act in enumerate(acts) if is_rectifying(act)]
    if dead_layers:
        # A unit is dead when it is <= 0 for every example (and, in a conv map, every position).
        per_unit = [(channel_rows(outputs[k]) <= 0).all(dim=0).float().mean() for k in dead_layers]
        dead_units = packer.add(torch.stack(per_unit))
        for i, k in enumerate(dead_layers):
            n = outputs[k].numel()
            dead = int(stats.count_below(output_rows[k], at_most_zero)) / n
            result[k] = {"dead": significant(dead), "dead_units": dead_units.row(i)}
    for k, act in enumerate(acts):
        bounds = saturation_bounds(act)
        if bounds is None:
            continue
        n = outputs[k].numel()
        below_low, up_to_high = stats.count_below(
            output_rows[k], _saturation_thresholds(*bounds)
        ).tolist()
        finite = n - int(nonfinite[output_rows[k]])
        result[k] = {"saturated": significant((below_low + finite - up_to_high) / n)}
    return result


@cache
def _saturation_thresholds(low: float, high: float) -> np.ndarray:
    """float32 thresholds below which lie the values v < low + margin and v <= high - margin
    (everything else finite is above the latter)."""
    limits = np.array([low + SATURATION_MARGIN, high - SATURATION_MARGIN], np.float32)
    thresholds = np.array([limits[0], np.nextafter(limits[1], np.float32(np.inf))])
    thresholds.flags.writeable = False  # one array for every frame
    return thresholds


def _tap_dicts(stats: RowStats, packer: Packer) -> list[dict[str, Json]]:
    """Each row's statistics as a wire dict. RowStats live on the host, so no sync here;
    the floating statistics are written in when the frame resolves (shortened with the
    frame's other numbers, in one go)."""
    cells = stats.cells
    counts = cells[:, 1:-1].tolist()
    tallies = np.column_stack([cells[:, 0], cells[:, -1], stats.nonfinite]).tolist()
    taps: list[dict[str, Json]] = [
        Filled(
            counts=counts[i],
            underflow=tallies[i][0],
            overflow=tallies[i][1],
            nonfinite=tallies[i][2],
            percentiles=None,
            mean=None,
            std=None,
            min=None,
            max=None,
        )
        for i in range(len(counts))
    ]

    def fill(numbers: Json) -> None:
        assert isinstance(numbers, list)
        for tap, (mean, std, low, high, *percentiles) in zip(taps, numbers, strict=True):
            tap.update(percentiles=percentiles, mean=mean, std=std, min=low, max=high)

    # per row: mean, std, min, max, then the percentiles
    packer.later(
        np.column_stack([stats.mean, stats.std, stats.min, stats.max, stats.percentiles]), fill
    )
    return taps
