"""Frame assembly: one probed step's measurements of every variant as a `frame` wire record.

The trainer decides what happened (which variants trained, their passes, tests and ICS);
this module only lays it out as docs/protocol.md specifies, through one Packer so the
whole frame costs one sync point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from covshift.wire import Json, message

from . import ics
from .fixed_drift import FixedDataDrift
from .models import Network, layer_weights
from .packing import Packer, significant
from .probes import Captured, Probe, tap_values

Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Pass:
    """One variant's training forward and backward: captured taps (when probed), loss, and
    (when probed) the logits and the batch's labels, which the frame scores: measured
    apart, that is the measuring process's work, not training's."""

    layers: Captured | None
    loss: torch.Tensor
    logits: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def accuracy(self) -> torch.Tensor:
        assert self.logits is not None and self.labels is not None  # kept on probed steps
        return (self.logits.argmax(1) == self.labels).float().mean()


@dataclass(frozen=True)
class StepView:
    """What the trainer did at the frame's step, for the frame to show."""

    step: int
    epoch: float
    lr: float
    batch_size: int
    statuses: dict[str, str]  # variant -> "training" | "skipped" | "diverged"
    diverged_at: dict[str, int | None]
    tested: bool  # a test step: every variant gets "test", null where it was not scored


def build_frame(
    view: StepView,
    models: dict[str, Network],
    probe: Probe,
    fixed: FixedDataDrift,
    passes: dict[str, Pass],
    tests: dict[str, Metrics],
    shifts: dict[str, Metrics],
    grad_norms: dict[str, torch.Tensor],
    diverging: dict[str, int],
) -> dict[str, Json]:
    """The frame record: every variant's status, losses, layers, tests and ICS, resolved.
    grad_norms: each trained variant's per-layer gradient norms of this step (the trainer
    holds the gradients); diverging: the variants whose loss went non-finite since the
    previous frame, at the first such step (shown as diverged from this frame on)."""
    packer = Packer()
    values = {v: tap_values(models[v], p.layers or []) for v, p in passes.items()}
    layers = probe.reduce(values, models, packer)
    on_fixed_data = fixed.measure({v: models[v] for v in passes}, packer)
    for variant in models:
        if variant not in passes:
            fixed.forget(variant)
    for variant, measured in on_fixed_data.items():
        for layer, fixed_entry in zip(layers[variant], measured, strict=True):
            layer["drift_fixed"] = fixed_entry
    variants: dict[str, Json] = {}
    for variant in models:
        entry: dict[str, Json] = {"status": view.statuses[variant]}
        if view.diverged_at[variant] is not None:
            entry["diverged_at"] = view.diverged_at[variant]
        if variant in diverging:
            entry["status"] = "diverged"
            entry["diverged_at"] = diverging[variant]
        if variant in passes:
            norms = packer.add(grad_norms[variant])
            for i, layer in enumerate(layers[variant]):
                layer["grad_norm"] = norms.row(i)
            entry["loss"] = packer.add(passes[variant].loss)
            entry["acc"] = packer.add(passes[variant].accuracy())
            entry["layers"] = layers[variant]
        if variant in tests:
            entry["test"] = {name: packer.add(value) for name, value in tests[variant].items()}
        elif view.tested:
            entry["test"] = None
        if variant in shifts:
            entry["ics"] = ics.template(shifts[variant], view.lr, packer)
        variants[variant] = entry
    frame = message(
        "frame",
        step=view.step,
        epoch=significant(view.epoch),
        lr=view.lr,
        batch_size=view.batch_size,
        variants=variants,
    )
    resolved: dict[str, Json] = packer.resolve(frame)
    return resolved


def grad_norms(model: Network) -> torch.Tensor:
    """Each hidden layer's gradient norm after the backward, (layers,)."""
    return torch.stack([_grad_norm(layer_weights(b.linear)) for b in model.hidden()])


def first_nonfinite(step: int, flags: list[bool]) -> int | None:
    """The first step whose loss was non-finite, of the steps up to `step`, given for each
    (one per step, the last at `step`) whether its loss was non-finite; None when every
    one was finite."""
    if not any(flags):
        return None
    return step - len(flags) + 1 + flags.index(True)


def _grad_norm(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """L2 norm of the gradients of these parameters together (WeightNorm: g and v)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(float("nan"))
    # one weight: its norm, without a flattened copy
    values = grads[0] if len(grads) == 1 else torch.cat([g.reshape(-1) for g in grads])
    norm: torch.Tensor = torch.linalg.vector_norm(values)
    return norm
