"""The networks: one MLP per variant, built so the normalizer is the only difference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from covshift.config import RunConfig

from .norms import BatchRenorm1d, GhostBatchNorm1d, NoisyBatchNorm1d

Placement = Literal["none", "before", "after"]
NormKind = Literal["none", "bn", "ln", "gn", "brn", "noisy_bn", "ghost_bn"]


@dataclass(frozen=True)
class VariantSpec:
    """Which normalizer a variant uses, where it sits, and what the user reads about it."""

    placement: Placement
    label: str
    norm: NormKind = "none"
    weight_norm: bool = False


# A normalizer before the activation replaces the Linear bias by its own shift beta
# (Ioffe & Szegedy, Sec. 3.2), so those variants' Linear layers have no bias.
VARIANTS: dict[str, VariantSpec] = {
    "plain": VariantSpec("none", "no normalization"),
    "bn": VariantSpec("before", "BatchNorm before the activation", "bn"),
    "bn_after": VariantSpec("after", "BatchNorm after the activation", "bn"),
    "ln": VariantSpec("before", "LayerNorm before the activation", "ln"),
    "gn": VariantSpec("before", "GroupNorm before the activation", "gn"),
    "wn": VariantSpec("none", "WeightNorm on every hidden Linear layer", weight_norm=True),
    "brn": VariantSpec("before", "Batch Renorm before the activation", "brn"),
    "noisy_bn": VariantSpec(
        "before", "BatchNorm plus shifting noise (Santurkar et al.)", "noisy_bn"
    ),
    "ghost_bn": VariantSpec("before", "BatchNorm over ghost batches", "ghost_bn"),
}

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


class Block(nn.Module):
    """One hidden layer: Linear, then the normalizer before or after the activation (or none)."""

    def __init__(
        self,
        n_in: int,
        width: int,
        activation: str,
        placement: Placement,
        norm: nn.Module | None,
    ) -> None:
        super().__init__()
        self.placement = placement
        self.linear = nn.Linear(n_in, width, bias=placement != "before")
        self.norm = norm
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if self.norm is not None and self.placement == "before":
            x = self.norm(x)
        x = self.act(x)
        if self.norm is not None and self.placement == "after":
            x = self.norm(x)
        return x


class MLP(nn.Module):
    """depth hidden Blocks and a Linear head producing class logits."""

    def __init__(self, blocks: list[Block], head: nn.Linear) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(x)
        return logits

    def hidden(self) -> list[Block]:
        return [block for block in self.blocks if isinstance(block, Block)]

    def linears(self) -> list[nn.Linear]:
        return [block.linear for block in self.hidden()] + [self.head]

    def layer_parameters(self) -> list[list[nn.Parameter]]:
        """Every parameter of each layer (hidden blocks, then the head), in forward order."""
        return [list(block.parameters()) for block in self.hidden()] + [
            list(self.head.parameters())
        ]


def layer_weights(linear: nn.Linear) -> list[nn.Parameter]:
    """A Linear layer's weight parameters: its weight, or WeightNorm's g and v."""
    return [p for name, p in linear.named_parameters() if name != "bias"]


def make_norm(kind: NormKind, config: RunConfig, layer: int) -> nn.Module | None:
    """The normalizer of one hidden layer; every one uses config.bn_eps."""
    width, momentum, eps = config.width, config.bn_momentum, config.bn_eps
    if kind == "bn":
        return nn.BatchNorm1d(width, momentum=momentum, eps=eps)
    if kind == "ln":
        return nn.LayerNorm(width, eps=eps)
    if kind == "gn":
        return nn.GroupNorm(config.gn_groups, width, eps=eps)
    if kind == "brn":
        ramp = config.brn_ramp * config.steps
        return BatchRenorm1d(width, momentum, eps, config.brn_r_max, config.brn_d_max, ramp)
    if kind == "noisy_bn":
        # Its own stream per layer, derived from the run's seed: reproducible, independent.
        return NoisyBatchNorm1d(width, momentum, eps, seed=config.seed * 1009 + layer + 1)
    if kind == "ghost_bn":
        return GhostBatchNorm1d(width, momentum, eps, config.ghost_batch_size)
    return None


def build_mlp(config: RunConfig, variant: str, n_in: int, n_classes: int) -> MLP:
    """An MLP for one variant with PyTorch's default initial weights (no WeightNorm yet)."""
    spec = VARIANTS[variant]
    blocks = [
        Block(
            n_in if layer == 0 else config.width,
            config.width,
            config.activation,
            spec.placement,
            make_norm(spec.norm, config, layer),
        )
        for layer in range(config.depth)
    ]
    return MLP(blocks, nn.Linear(config.width, n_classes))


@torch.no_grad()
def build_variants(
    config: RunConfig, n_in: int, n_classes: int, device: torch.device
) -> dict[str, MLP]:
    """One MLP per variant, all starting from the same Linear weights (seeded by config.seed)."""
    models: dict[str, MLP] = {}
    # fork_rng: building models must not move the caller's global random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        reference = build_mlp(config, "plain", n_in, n_classes)
        if config.init == "gaussian":
            generator = torch.Generator().manual_seed(config.seed)
            for linear in reference.linears():
                linear.weight.normal_(0.0, config.init_std, generator=generator)
                if linear.bias is not None:
                    linear.bias.zero_()
        for variant in config.variants:
            model = build_mlp(config, variant, n_in, n_classes)
            for source, target in zip(reference.linears(), model.linears(), strict=True):
                target.weight.copy_(source.weight)
                if target.bias is not None and source.bias is not None:
                    target.bias.copy_(source.bias)
            if VARIANTS[variant].weight_norm:
                # After the copy: WeightNorm starts at g = ||w|| per unit and v = w, the same W.
                for block in model.hidden():
                    weight_norm(block.linear)
            models[variant] = model.to(device)
    return models
