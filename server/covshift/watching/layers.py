"""What to measure in a user's model: its normalizers (or activations) as Blocks, in run order.

The measuring core (train/probes.capture, Probe, normstats.norm_templates) works on
Blocks: objects with `linear`, `norm`, `act` and `placement`. A `WatchedLayer` is such a
Block over modules of the user's model, found from the order in which its modules ran in
one forward pass (registration order can differ from execution order). `complete` turns
what capture recorded into the taps the core expects, every tensor laid out as
(samples, channels): the channel axis last, everything else folded into samples, which is
the (N, C) layout the core measures per channel.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from covshift.train.hooks import Hook, hooked, tensor_key
from covshift.train.norms import normalized
from covshift.train.probes import Captured

log = logging.getLogger(__name__)

# Normalizers normalize per channel (axis 1) or over their trailing normalized_shape.
CHANNEL_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,  # BatchNorm1d/2d/3d, SyncBatchNorm, covshift's own
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
)
TRAILING_NORMS: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.RMSNorm)
NORMS = CHANNEL_NORMS + TRAILING_NORMS
# Element-wise activations; each maps to the Probe's activation family: outputs near the
# bounds of a squashing one saturate, a rectifier-like one has dead (<= 0) outputs.
SQUASHING: dict[type[nn.Module], str] = {
    nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Hardtanh: "tanh",
}
RECTIFIERS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Hardswish,
    nn.Softplus,
)
ACTIVATIONS = tuple(SQUASHING) + RECTIFIERS


@dataclass(eq=False)
class WatchedLayer:
    """One measured layer as a Block: the normalizer (None when watched at an activation), the
    module feeding it (its gradient norm is the layer's), and the activation after it."""

    name: str  # dotted module path of the normalizer, or of the activation without one
    # The feeding layer where its output is a tensor (capture hooks it; complete() replaces
    # its tap by the normalizer's input); else an Identity that never runs.
    linear: nn.Module
    source: nn.Module | None  # the feeding layer, whose weights' gradient norm is the layer's
    norm: nn.Module | None
    act: nn.Module  # an Identity that never runs when no activation follows the normalizer
    feeding: str | None
    activation: str | None
    channel_first: bool  # channels on axis 1 (conv layouts), else the trailing dimensions
    channels: int
    placement: str = "before"  # linear_out is the normalizer's input, as for a Block "before"

    def describe(self) -> dict[str, Any]:
        kind = type(self.norm if self.norm is not None else self.act).__name__
        return {
            "name": self.name,
            "kind": kind,
            "feeding": self.feeding,
            "activation": self.activation,
            "channels": self.channels,
        }

    def weights(self) -> list[nn.Parameter]:
        """The feeding layer's weights (not its bias), whose gradient norm the frame shows."""
        if self.source is None:
            return []
        return [p for n, p in self.source.named_parameters() if n.rsplit(".", 1)[-1] != "bias"]


@dataclass(eq=False)
class WatchedModel:
    """A user's model as the measuring core sees an MLP: its layers in forward order."""

    layers: list[WatchedLayer] = field(default_factory=list)

    def hidden(self) -> list[WatchedLayer]:
        return self.layers


class ExecutionOrder:
    """The modules that ran in a forward pass, in the order they finished, with output shapes."""

    def __init__(self) -> None:
        self.modules: list[nn.Module] = []
        self.shapes: list[tuple[int, ...]] = []

    def hook(self) -> Hook:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            self.modules.append(module)
            self.shapes.append(tuple(output.shape) if isinstance(output, torch.Tensor) else ())

        return record


@contextmanager
def recording(model: nn.Module, order: ExecutionOrder) -> Iterator[None]:
    """Record the modules that compute something (leaves, and modules with parameters of
    their own such as MultiheadAttention) as they run."""
    hook = order.hook()
    measured = [
        m
        for m in model.modules()
        if not any(True for _ in m.children()) or any(True for _ in m.parameters(recurse=False))
    ]
    with hooked((module, hook) for module in measured):
        yield


def find_layers(
    model: nn.Module, order: ExecutionOrder, select: Sequence[nn.Module] | str | None = None
) -> WatchedModel:
    """The watched layers: every normalizer that ran once, or every activation that ran once
    when none did (a plain twin); `select` keeps only the listed modules or those whose path
    contains the given text."""
    names = {module: name for name, module in model.named_modules()}
    calls = Counter(order.modules)
    for module, count in calls.items():
        if count > 1 and isinstance(module, NORMS + ACTIVATIONS):
            # capture keeps a module's last call only, so a reused one cannot be attributed.
            log.info("not watching %s: it runs %d times per forward", names.get(module), count)
    once = [i for i, m in enumerate(order.modules) if calls[m] == 1]
    chosen: list[int]
    if isinstance(select, str):
        once = [i for i in once if select in names.get(order.modules[i], "")]
    elif select is not None:
        wanted = set(select)
        once = [i for i in once if order.modules[i] in wanted]
    chosen = [i for i in once if isinstance(order.modules[i], NORMS)]
    if not chosen:
        chosen = [i for i in once if isinstance(order.modules[i], ACTIVATIONS)]
    return WatchedModel([_layer(order, names, calls, i) for i in chosen])


def _layer(
    order: ExecutionOrder, names: dict[nn.Module, str], calls: Counter[nn.Module], i: int
) -> WatchedLayer:
    module = order.modules[i]
    at = _feeding(order.modules, i)
    feeding = order.modules[at] if at is not None else None
    # A module returning a tuple (MultiheadAttention) has no output tensor to hook.
    hookable = at is not None and order.shapes[at] != ()
    shape = order.shapes[i]
    if isinstance(module, NORMS):
        following = order.modules[i + 1] if i + 1 < len(order.modules) else None
        act = following if isinstance(following, ACTIVATIONS) and calls[following] == 1 else None
        norm: nn.Module | None = module
        channel_first = isinstance(module, CHANNEL_NORMS)
        if channel_first:
            channels = shape[1] if len(shape) > 1 else 1
        else:
            channels = math.prod(module.normalized_shape)  # type: ignore[arg-type]
    else:
        act, norm = module, None
        # A convolution's output keeps channels on axis 1; otherwise features come last.
        channel_first = len(shape) == 2 or isinstance(feeding, nn.modules.conv._ConvNd)
        channels = shape[1] if channel_first and len(shape) > 1 else (shape[-1] if shape else 1)
    return WatchedLayer(
        name=names[module],
        linear=feeding if feeding is not None and hookable else nn.Identity(),
        source=feeding,
        norm=norm,
        act=act if act is not None else nn.Identity(),
        feeding=names[feeding] if feeding is not None else None,
        activation=names[act] if act is not None else None,
        channel_first=channel_first,
        channels=channels,
    )


def _feeding(modules: list[nn.Module], i: int) -> int | None:
    """Where the nearest module before position i with weights of its own ran (Linear,
    Conv, ...)."""
    for at in range(i - 1, -1, -1):
        module = modules[at]
        if isinstance(module, NORMS + ACTIVATIONS):
            continue
        if any(True for _ in module.parameters(recurse=False)):
            return at
    return None


def activation_family(model: WatchedModel) -> str:
    """The Probe's activation family for the model: that of its first activation (relu-like
    when it has none)."""
    for layer in model.layers:
        for kind, family in SQUASHING.items():
            if isinstance(layer.act, kind):
                return family
    return "relu"


def ran_every_layer(model: WatchedModel, captured: Captured) -> bool:
    """Whether the captured forward passed every watched layer's hooks (a layer skipped by
    the forward, or a compiled graph that kept older hooks, leaves its store empty)."""
    return all(
        ("norm_input" if layer.norm is not None else "act_input") in store
        for layer, store in zip(model.layers, captured, strict=True)
    )


def complete(model: WatchedModel, captured: Captured) -> Captured | None:
    """The taps of each layer from what capture recorded, as (samples, channels) tensors:
    linear_out is the normalizer's input, x̂ is recomputed from it (with the running
    statistics of `model`'s normalizers in eval mode: pass a frozen copy to get a past
    step's), and without an activation after the normalizer act_input and act_output are
    its output. None when a layer did not run in the captured forward."""
    if not ran_every_layer(model, captured):
        return None
    result: Captured = []
    for layer, store in zip(model.layers, captured, strict=True):
        rows = _Rows(layer)
        if layer.norm is not None:
            x = store["norm_input"]
            xhat = store.get("xhat")
            taps = {
                "linear_out": x,
                "norm_input": x,
                "xhat": xhat if xhat is not None else _xhat(layer.norm, x),
                "norm_out": store["norm_out"],
                "act_input": store.get("act_input", store["norm_out"]),
                "act_output": store.get("act_output", store["norm_out"]),
            }
        else:
            taps = {
                "linear_out": store["act_input"],
                "act_input": store["act_input"],
                "act_output": store["act_output"],
            }
        result.append({name: rows(tensor) for name, tensor in taps.items()})
    return result


class _Rows:
    """A layer's tensors as (samples, channels); one tensor seen under several taps is laid
    out once, so the Probe still finds it shared (and sorts it once)."""

    def __init__(self, layer: WatchedLayer) -> None:
        self.layer = layer
        self.done: dict[tuple[object, ...], torch.Tensor] = {}

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        key = tensor_key(tensor)
        if key not in self.done:
            if self.layer.channel_first and tensor.dim() > 2:
                tensor = tensor.movedim(1, -1)
            self.done[key] = tensor.reshape(-1, self.layer.channels)
        return self.done[key]


def _xhat(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x̂ as the normalizer computed it: norms.normalized where it applies, else the same
    computation for the module type (batch norms of any rank, instance norms)."""
    with torch.no_grad():
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            batch_stats = norm.training or norm.running_mean is None
            if batch_stats and isinstance(norm, nn.BatchNorm1d):
                return normalized(norm, x)
            # In eval mode a batch norm normalizes with its running statistics.
            mean = None if batch_stats else norm.running_mean
            var = None if batch_stats else norm.running_var
            return F.batch_norm(x, mean, var, training=batch_stats, eps=norm.eps)
        if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
            return F.instance_norm(x, eps=norm.eps)
        return normalized(norm, x)
