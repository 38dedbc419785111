"""The networks: one MLP or CNN per variant, built so the normalizer is the only difference."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from covshift.config import POOL_EVERY, RunConfig, check_cnn_depth, cnn_spatial
from covshift.errors import ConfigError
from covshift.variants import VARIANTS, Placement
from covshift.wire import Json

from .norms import NORMS

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


class Block(nn.Module):
    """One hidden layer: Linear (or a 3x3 convolution, `conv`), then the normalizer before or
    after the activation (or none).

    Its attributes are what every measurement reads: `linear` (the weight layer), `norm`
    (None without one), `act` and `placement` ("before", "after" or "none")."""

    def __init__(
        self,
        n_in: int,
        width: int,
        activation: str,
        placement: Placement,
        norm: nn.Module | None,
        bias: bool,
        conv: bool = False,
    ) -> None:
        super().__init__()
        self.placement = placement
        # padding 1 keeps the map's size, so only the pooling between blocks shrinks it.
        self.linear: nn.Linear | nn.Conv2d = (
            nn.Conv2d(n_in, width, 3, padding=1, bias=bias)
            if conv
            else nn.Linear(n_in, width, bias=bias)
        )
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


class Network(nn.Module):
    """Hidden Blocks in forward order and a Linear head: what the trainer and every
    measurement see of a model, whatever its architecture."""

    def __init__(self, blocks: list[Block], head: nn.Linear) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def hidden(self) -> list[Block]:
        return [block for block in self.blocks if isinstance(block, Block)]

    def linears(self) -> list[nn.Linear | nn.Conv2d]:
        """Every weight layer: the hidden blocks' Linear or Conv2d, then the head."""
        return [block.linear for block in self.hidden()] + [self.head]

    def layer_parameters(self) -> list[list[nn.Parameter]]:
        """Every parameter of each layer (hidden blocks, then the head), in forward order."""
        return [list(block.parameters()) for block in self.hidden()] + [
            list(self.head.parameters())
        ]

    def layer_shapes(self) -> list[dict[str, Json]]:
        """Each hidden layer's output as the hello describes it."""
        return [
            {"kind": "linear", "channels": block.linear.out_features, "spatial": []}
            for block in self.hidden()
            if isinstance(block.linear, nn.Linear)
        ]


class MLP(Network):
    """depth hidden Blocks of Linear layers and a Linear head producing class logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(x)
        return logits


class CNN(Network):
    """depth conv Blocks on images, 2x2 max pooling after every POOL_EVERY-th, then the global
    average of each channel and a Linear head. Takes the dataset's flattened rows and views
    them as (N, C, H, W), so batches, probe sets and test splits are the MLP's."""

    def __init__(
        self, blocks: list[Block], head: nn.Linear, image_shape: tuple[int, int, int]
    ) -> None:
        super().__init__(blocks, head)
        self.image_shape = image_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.image_shape)
        for index, block in enumerate(self.blocks):
            x = block(x)
            if (index + 1) % POOL_EVERY == 0:
                x = F.max_pool2d(x, 2)
        logits: torch.Tensor = self.head(x.mean(dim=(2, 3)))
        return logits

    def layer_shapes(self) -> list[dict[str, Json]]:
        _, height, width = self.image_shape
        sizes = cnn_spatial(len(self.blocks), height, width)
        return [
            {"kind": "conv", "channels": block.linear.out_channels, "spatial": [h, w]}
            for block, (h, w) in zip(self.hidden(), sizes, strict=True)
            if isinstance(block.linear, nn.Conv2d)
        ]


def layer_weights(linear: nn.Module) -> list[nn.Parameter]:
    """A weight layer's weight parameters: its weight, or WeightNorm's g and v."""
    return [p for name, p in linear.named_parameters() if name != "bias"]


def build_network(
    config: RunConfig,
    variant: str,
    n_in: int,
    n_classes: int,
    image_shape: tuple[int, int, int] | None = None,
) -> Network:
    """The network of one variant (an MLP, or a CNN for arch 'cnn' on images of
    image_shape) with PyTorch's default initial weights (no WeightNorm yet)."""
    spec = VARIANTS[variant]
    conv = config.arch == "cnn"
    if conv:
        n_in = _image_channels(config, image_shape)
    blocks = [
        Block(
            n_in if layer == 0 else config.width,
            config.width,
            config.activation,
            spec.placement,
            NORMS[spec.norm](config, layer) if spec.norm else None,
            spec.linear_bias,
            conv=conv,
        )
        for layer in range(config.depth)
    ]
    head = nn.Linear(config.width, n_classes)
    if conv:
        assert image_shape is not None
        return CNN(blocks, head, image_shape)
    return MLP(blocks, head)


def _image_channels(config: RunConfig, image_shape: tuple[int, int, int] | None) -> int:
    """The CNN's input channels, once the data is known to be images it can take."""
    if image_shape is None:
        raise ConfigError(f"arch: 'cnn' needs image data; dataset '{config.dataset}' has none")
    channels, height, width = image_shape
    try:
        check_cnn_depth(config.depth, height, width, config.dataset)
    except ValueError as exc:  # images of another size than the config assumed (IDX files)
        raise ConfigError(str(exc)) from exc
    return channels


@torch.no_grad()
def build_variants(
    config: RunConfig,
    n_in: int,
    n_classes: int,
    device: torch.device,
    image_shape: tuple[int, int, int] | None = None,
) -> dict[str, Network]:
    """One network per variant, all starting from the same weights (seeded by config.seed).
    A CNN (arch 'cnn') needs the data's image_shape (C, H, W); n_in is then C x H x W."""
    models: dict[str, Network] = {}
    # fork_rng: building models must not move the caller's global random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        reference = build_network(config, "plain", n_in, n_classes, image_shape)
        if config.init == "gaussian":
            generator = torch.Generator().manual_seed(config.seed)
            for linear in reference.linears():
                linear.weight.normal_(0.0, config.init_std, generator=generator)
                if linear.bias is not None:
                    linear.bias.zero_()
        for variant in config.variants:
            model = build_network(config, variant, n_in, n_classes, image_shape)
            for source, target in zip(reference.linears(), model.linears(), strict=True):
                target.weight.copy_(source.weight)
                if target.bias is not None and source.bias is not None:
                    target.bias.copy_(source.bias)
            if VARIANTS[variant].weight_norm:
                # After the copy: WeightNorm starts at g = ||w|| per unit (per output channel)
                # and v = w, the same W.
                for block in model.hidden():
                    weight_norm(block.linear)
            models[variant] = model.to(device)
    return models
