"""The networks: one MLP per variant, built so the normalizer is the only difference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .config import RunConfig

Placement = Literal["none", "before", "after"]


@dataclass(frozen=True)
class VariantSpec:
    """Where a variant puts its normalizer and what the user reads about it."""

    placement: Placement
    label: str


VARIANTS: dict[str, VariantSpec] = {
    "plain": VariantSpec("none", "no normalization"),
    # Ioffe & Szegedy, Sec. 3.2: normalize Wx, drop the Linear bias (beta replaces it).
    "bn": VariantSpec("before", "BatchNorm before the activation"),
    "bn_after": VariantSpec("after", "BatchNorm after the activation"),
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
        bn_momentum: float | None,
        bn_eps: float,
    ) -> None:
        super().__init__()
        self.placement = placement
        self.linear = nn.Linear(n_in, width, bias=placement != "before")
        self.norm: nn.BatchNorm1d | None = (
            None if placement == "none" else nn.BatchNorm1d(width, momentum=bn_momentum, eps=bn_eps)
        )
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


def build_mlp(config: RunConfig, variant: str, n_in: int, n_classes: int) -> MLP:
    """An MLP for one variant with PyTorch's default initial weights."""
    placement = VARIANTS[variant].placement
    blocks = []
    for layer in range(config.depth):
        blocks.append(
            Block(
                n_in if layer == 0 else config.width,
                config.width,
                config.activation,
                placement,
                config.bn_momentum,
                config.bn_eps,
            )
        )
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
            models[variant] = model.to(device)
    return models
