"""ICS measured through gradients: Santurkar et al.'s Definition 2.1 and the loss landscape.

Both are measured on a copy of a variant taken just before its training step, on
that step's batch, so training itself is untouched. Every forward pass on the copy
starts from the same running statistics and noise as the training forward (they
are put back each time), so the only thing that differs between two passes is
the parameters.

- Gradient shift (Santurkar et al. 2018, Definition 2.1): for each layer i, G is
  the gradient of the loss with respect to layer i's weights at the current
  parameters, and G' the same gradient after layers 1..i-1 took their SGD update
  (θ - lr·∇) on the same batch, layers i.. unchanged. ‖G - G'‖₂ and cos(G, G').
  Under momentum or Adam the paper's update is the optimizer's own; this plain SGD step
  approximates it (said in docs/protocol.md and in the page's note).
- Landscape along the gradient (their Sec. 3.1): for step sizes η = lr × LANDSCAPE_STEPS,
  the loss at θ - ηg (its range: how much the loss varies along the step), the
  gradient predictiveness max ‖g - g(θ - ηg)‖₂, and the effective β-smoothness
  max ‖g - g(θ - ηg)‖₂ / ‖ηg‖₂.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from covshift.wire import Json

from .models import Network, layer_weights
from .norms import restoring_state
from .packing import Packer

# Multiples of the learning rate at which the landscape is probed along -g.
LANDSCAPE_STEPS = (0.25, 0.5, 1.0, 2.0, 4.0)

Gradients = dict[nn.Parameter, torch.Tensor]


def snapshot(model: Network) -> Network:
    """A copy of the model as it is now: parameters, buffers, noise generators, mode."""
    twin = copy.deepcopy(model)
    for parameter in twin.parameters():
        parameter.grad = None
    for module in twin.modules():
        # deepcopy copies hooks too; whoever watches the model must not see the copy's passes.
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    return twin


def measure(
    twin: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    lr: float,
    trained: tuple[torch.Tensor, list[torch.Tensor | None]] | None = None,
) -> dict[str, torch.Tensor]:
    """Gradient shift per layer and the landscape along the gradient, on the snapshot `twin`
    (which this changes: use it once). `trained` may give the loss and the gradients (in
    parameter order) that the training step computed from the same state, saving a pass."""
    parameters = list(twin.parameters())
    if trained is None:
        loss, grads = _loss_and_gradients(twin, x, y, loss_fn, parameters)
    else:
        loss = trained[0].detach()
        grads = {
            p: torch.zeros_like(p) if g is None else g
            for p, g in zip(parameters, trained[1], strict=True)
        }
    result = landscape(twin, x, y, loss_fn, lr, loss, grads)
    result["layers"] = gradient_shift(twin, x, y, loss_fn, lr, grads)
    return result


def gradient_shift(
    model: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    lr: float,
    grads: Gradients,
) -> torch.Tensor:
    """(layers, 3): ‖G - G'‖₂, cos(G, G'), ‖G‖₂ per layer (hidden layers, then the head).
    `grads` holds every parameter's gradient at the current parameters. Moves the model."""
    weights = [layer_weights(block.linear) for block in model.hidden()] + [
        layer_weights(model.head)
    ]
    layers = model.layer_parameters()
    rows = []
    for i, layer_weight in enumerate(weights):
        if i > 0:
            with torch.no_grad():  # layer i-1 takes its SGD step; earlier ones already did
                for parameter in layers[i - 1]:
                    parameter.sub_(lr * grads[parameter])
        before = _flat([grads[w] for w in layer_weight])
        if i == 0:
            after = before  # no earlier layer to update: G' = G
        else:
            after = _flat(_loss_and_gradients(model, x, y, loss_fn, layer_weight)[1].values())
        difference = torch.linalg.vector_norm(before - after)
        norm = torch.linalg.vector_norm(before)
        cosine = torch.dot(before, after) / (norm * torch.linalg.vector_norm(after))
        rows.append(torch.stack([difference, cosine, norm]))
    return torch.stack(rows)


def landscape(
    model: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    lr: float,
    loss: torch.Tensor,
    grads: Gradients,
) -> dict[str, torch.Tensor]:
    """Loss and gradient change at θ - ηg for each η; the parameters end where they began."""
    parameters = list(model.parameters())
    start = [p.detach().clone() for p in parameters]
    g = _flat([grads[p] for p in parameters])
    losses, changes = [], []
    for multiple in LANDSCAPE_STEPS:
        with torch.no_grad():
            for parameter, origin in zip(parameters, start, strict=True):
                parameter.copy_(origin - lr * multiple * grads[parameter])
        moved_loss, moved = _loss_and_gradients(model, x, y, loss_fn, parameters)
        losses.append(moved_loss)
        changes.append(torch.linalg.vector_norm(_flat(moved.values()) - g))
    with torch.no_grad():
        for parameter, origin in zip(parameters, start, strict=True):
            parameter.copy_(origin)
    every_loss = torch.stack([loss, *losses])
    change = torch.stack(changes)
    steps = torch.tensor(LANDSCAPE_STEPS, dtype=g.dtype, device=g.device) * lr
    return {
        "loss": every_loss[1:],
        "loss_range": every_loss.max() - every_loss.min(),
        "grad_predictiveness": change.max(),
        "beta_smoothness": (change / (steps * torch.linalg.vector_norm(g))).max(),
    }


def template(result: dict[str, torch.Tensor], lr: float, packer: Packer) -> dict[str, Json]:
    """The frame's "ics" object; its numbers are Slots in packer."""
    layers = packer.add(result["layers"])
    summary = packer.add(
        torch.stack(
            [result["loss_range"], result["grad_predictiveness"], result["beta_smoothness"]]
        )
    )
    return {
        "layers": [
            {
                "grad_diff": layers.row(i).row(0),
                "grad_cos": layers.row(i).row(1),
                "grad_norm": layers.row(i).row(2),
            }
            for i in range(result["layers"].shape[0])
        ],
        "landscape": {
            "step_sizes": [lr * multiple for multiple in LANDSCAPE_STEPS],
            "loss": packer.add(result["loss"]),
            "loss_range": summary.row(0),
            "grad_predictiveness": summary.row(1),
            "beta_smoothness": summary.row(2),
        },
    }


def _loss_and_gradients(
    model: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    wrt: list[nn.Parameter],
) -> tuple[torch.Tensor, Gradients]:
    """The training loss on (x, y) and its gradient with respect to `wrt`, from the model's
    running statistics and noise as they were when it was copied."""
    with restoring_state(model), torch.enable_grad():
        loss: torch.Tensor = loss_fn(model(x), y)
        found = torch.autograd.grad(loss, wrt, allow_unused=True)
    return loss.detach(), {
        p: torch.zeros_like(p) if g is None else g for p, g in zip(wrt, found, strict=True)
    }


def _flat(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])
