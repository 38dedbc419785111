"""The networks: one MLP per variant, built so the normalizer is the only difference."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from covshift.config import RunConfig
from covshift.variants import VARIANTS, Placement

from .norms import NORMS

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
        bias: bool,
    ) -> None:
        super().__init__()
        self.placement = placement
        self.linear = nn.Linear(n_in, width, bias=bias)
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


def build_mlp(config: RunConfig, variant: str, n_in: int, n_classes: int) -> MLP:
    """An MLP for one variant with PyTorch's default initial weights (no WeightNorm yet)."""
    spec = VARIANTS[variant]
    blocks = [
        Block(
            n_in if layer == 0 else config.width,
            config.width,
            config.activation,
            spec.placement,
            NORMS[spec.norm](config, layer) if spec.norm else None,
            spec.linear_bias,
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
