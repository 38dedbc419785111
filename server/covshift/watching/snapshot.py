"""A frame step held still for the writer thread: the captured tensors and copies of module state.

The writer reduces a frame step some steps after it was taken, when the user's loop has
run further forwards (BN's running buffers move in place) and optimizer steps (γ and β
move in place).
So at the frame step the training thread keeps what cannot change (the hooks' detached
tensors, this backward's gradient norms) and copies what can: `frozen` makes a copy of a
module that the measuring core reads exactly as it reads the live one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.utils import parametrize

from covshift.train.probes import Captured

from .layers import WatchedLayer, WatchedModel

Scalar = float | int | torch.Tensor
Scalars = Scalar | Mapping[str, Scalar] | None


@dataclass(frozen=True)
class FrameStep:
    """What one frame step measured, for the writer thread to reduce later."""

    step: int
    lr: float | None
    batch_size: int | None
    dropped: int  # frames dropped so far, as the frame reports it
    # Per variant with watched layers: the hooks' tensors (detached; nothing writes to them
    # after the forward, which ran the watched activations out of place).
    captured: dict[str, Captured]
    # Per variant in `captured`: its layers with frozen copies of their normalizers.
    models: dict[str, WatchedModel]
    # id(parameter) -> the norm of this backward's gradient (a tensor made by the hook).
    grads: dict[int, torch.Tensor]
    scalars: dict[str, dict[str, torch.Tensor]]  # variant -> "loss" / "acc", copied
    # The training thread's current stream on each CUDA device the tensors are on (none on
    # the CPU): the writer queues its work on them, behind the work that made the tensors.
    streams: list[torch.cuda.Stream]


def current_streams(captured: dict[str, Captured]) -> list[torch.cuda.Stream]:
    """The calling thread's current CUDA stream on each device the captured tensors are on.
    Another thread's current stream is the device's default one, which would not wait for
    a loop that trains on a stream of its own."""
    devices = {
        tensor.device
        for stores in captured.values()
        for store in stores
        for tensor in store.values()
        if tensor.device.type == "cuda"
    }
    return [torch.cuda.current_stream(device) for device in devices]


def frozen(module: nn.Module) -> nn.Module:
    """A copy of module that later steps cannot change: the same class and plain attributes
    (so isinstance, eps, momentum and training read as the live module's), its parameters and
    buffers cloned and detached, its submodules frozen alike. Only read, never called.

    Plain tensor attributes are shared, not copied: covshift's normalizers replace them
    (Batch Renorm's last_r, last_d) rather than writing into them."""
    # A shallow copy by hand: copy.copy goes through __getstate__, which parametrized
    # modules refuse. It shares the dicts below, which are then replaced.
    twin = type(module).__new__(type(module))
    twin.__dict__.update(module.__dict__)
    twin.__dict__["_parameters"] = {
        name: None if p is None else p.detach().clone() for name, p in module._parameters.items()
    }
    twin.__dict__["_buffers"] = {
        name: None if b is None else b.detach().clone() for name, b in module._buffers.items()
    }
    twin.__dict__["_modules"] = {
        name: None if m is None else frozen(m) for name, m in module._modules.items()
    }
    return twin


def frozen_layer(layer: WatchedLayer) -> WatchedLayer:
    """The layer with its normalizer frozen (running statistics, γ, β as of now). The feeding
    layer is frozen only when parametrized (weight norm's g is read from it); otherwise the
    core reads nothing of it that a step changes, and copying its weights would copy most of
    the model every frame."""
    norm = frozen(layer.norm) if layer.norm is not None else None
    linear = frozen(layer.linear) if parametrize.is_parametrized(layer.linear) else layer.linear
    return replace(layer, norm=norm, linear=linear)


def frozen_model(model: WatchedModel) -> WatchedModel:
    return WatchedModel([frozen_layer(layer) for layer in model.layers])


def scalars_of(variant: str, loss: Scalars, acc: Scalars) -> dict[str, torch.Tensor]:
    """The variant's loss and acc as 0-d tensors, copied (a tensor the loop keeps updating in
    place, such as a running accuracy, would otherwise change before the writer reads it)."""
    result: dict[str, torch.Tensor] = {}
    for key, given in (("loss", loss), ("acc", acc)):
        value = given.get(variant) if isinstance(given, Mapping) else given
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            result[key] = value.detach().reshape(()).clone()
        else:
            result[key] = torch.tensor(float(value), dtype=torch.float64)
    return result
