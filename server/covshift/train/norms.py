"""The normalizers beyond torch's own: Batch Renorm, noisy BN and ghost BN, and what all share.

Every batch normalizer here keeps BatchNorm's buffers (running_mean, running_var,
num_batches_tracked), momentum rule and eval-mode behaviour (running statistics),
so the trainer's controls, the probes and the inference statistics treat them
like BN. Each one's x̂, as it computed it, passes through an `nn.Identity` named
`xhat`, so a forward hook can read it exactly. Each works on Linear outputs (N, C) and on
conv maps (N, C, H, W), per channel over N x H x W; the 1d and 2d classes only fix the
shape they accept, as torch's BatchNorm1d and BatchNorm2d do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from covshift.config import RunConfig

# Santurkar et al. (2018), App. A.2.1, as issue 6 summarises it: per unit and step, a mean
# from U(-0.5, 0.5) and a scale from U(1, 1.25); per element, jitter of std 0.1. Applying
# them as y * scale + mean (each jittered) is our reading of "non-zero mean, non-unit variance".
NOISE_MEAN_RANGE = 0.5
NOISE_SCALE_RANGE = (1.0, 1.25)
NOISE_JITTER = 0.1


def has_running_stats(norm: nn.Module | None) -> bool:
    """Whether a normalizer keeps running statistics (and so differs in train and eval mode):
    any torch batch norm (1d, 2d, ours) that tracks them."""
    return isinstance(norm, _BatchNorm) and norm.running_mean is not None


def channel_rows(x: torch.Tensor) -> torch.Tensor:
    """x as (values, channels): (N, C) as it is; (N, C, *positions) as (N * positions, C),
    example by example, so each column holds one channel's values over N x H x W."""
    if x.dim() == 2:
        return x
    return x.movedim(1, -1).reshape(-1, x.shape[1])


def per_channel(vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (..., C) tensor shaped to broadcast along `like`'s channel axis (axis 1)."""
    return vector.reshape(*vector.shape, *([1] * (like.dim() - 2)))


@torch.no_grad()
def update_running_stats(norm: _BatchNorm, mean: torch.Tensor, var: torch.Tensor) -> None:
    """BatchNorm's rule: running = (1 - m) running + m batch; m = 1/t when momentum is None.

    var is the unbiased batch variance, as torch's BN averages it.
    """
    assert norm.running_mean is not None and norm.running_var is not None
    assert norm.num_batches_tracked is not None
    norm.num_batches_tracked.add_(1)
    if norm.momentum is None:
        # In the statistics' own dtype, and a tensor: no host sync on CUDA.
        weight: float | torch.Tensor = 1.0 / norm.num_batches_tracked.to(norm.running_mean.dtype)
    else:
        weight = norm.momentum
    norm.running_mean.lerp_(mean, weight)
    norm.running_var.lerp_(var, weight)


def ghost_count(batch_size: int, ghost_batch_size: int) -> int:
    """How many ghost batches a batch is cut into: floor(B / g), at least one.

    Contiguous and of near-equal size, each holds at least g examples (between g and 2g - 1);
    a batch smaller than g is one ghost batch, so none is a single example with variance 0.
    """
    return max(1, batch_size // ghost_batch_size)


def ghost_moments(
    x: torch.Tensor, ghost_batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per ghost batch: mean and biased variance (k, C), its values per channel (k, 1); and
    each example's ghost id (N,). Ghost batches cut examples; a conv map's positions go with
    their example."""
    count = ghost_count(x.shape[0], ghost_batch_size)
    ids = torch.arange(x.shape[0], device=x.device) * count // x.shape[0]
    sizes = torch.bincount(ids, minlength=count).to(x.dtype)[:, None]
    rows, row_ids = channel_rows(x), ids
    positions = x.numel() // (x.shape[0] * x.shape[1])
    if positions > 1:
        row_ids, sizes = ids.repeat_interleave(positions), sizes * positions
    sums = torch.zeros(count, x.shape[1], dtype=x.dtype, device=x.device).index_add(
        0, row_ids, rows
    )
    mean = sums / sizes
    centred = rows - mean[row_ids]
    var = torch.zeros_like(sums).index_add(0, row_ids, centred * centred) / sizes
    return mean, var, sizes, ids


def batch_moments(norm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The means and unbiased variances a BN-like norm uses in training: (k, C) each, one row
    per batch (per ghost batch for ghost BN), over N (x H x W) values per channel."""
    if isinstance(norm, GhostBatchNorm):
        mean, var, sizes, _ = ghost_moments(x, norm.ghost_batch_size)
        return mean, var * sizes / (sizes - 1)
    rows = channel_rows(x)
    return rows.mean(dim=0, keepdim=True), rows.var(dim=0, keepdim=True)


def normalized(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x̂ of torch's own normalizers, recomputed from their input (training mode)."""
    if isinstance(norm, nn.LayerNorm):
        return F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
    if isinstance(norm, nn.GroupNorm):
        return F.group_norm(x, norm.num_groups, eps=norm.eps)
    if isinstance(norm, nn.RMSNorm):
        return F.rms_norm(x, norm.normalized_shape, eps=norm.eps)
    if isinstance(norm, RMSNorm2d):
        return norm.normalize(x)
    if isinstance(norm, _BatchNorm):
        # Training-mode batch norm without affine or running buffers is exactly x̂.
        return F.batch_norm(x, None, None, training=True, eps=norm.eps)
    raise TypeError(f"no x̂ for {type(norm).__name__}")


class RMSNorm2d(nn.Module):
    """RMSNorm of a conv map: each example's values over all channels and positions divided by
    their root mean square, then a per-channel γ; no mean subtraction, no β. The same extent
    as the CNN's LayerNorm (GroupNorm with one group), without its centring."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.xhat = nn.Identity()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        square = (x * x).mean(dim=tuple(range(1, x.dim())), keepdim=True)
        return x * torch.rsqrt(square + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.xhat(self.normalize(x)) * per_channel(self.weight, x)
        return out


class BatchRenorm(_BatchNorm):
    """Batch Renormalization (Ioffe 2017): x̂ = (x - μB)/σB · r + d, r and d held constant
    in the backward pass; eval mode uses the running statistics, as BN.

    r = clip(σB/σ, 1/r_max, r_max), d = clip((μB - μ)/σ, -d_max, d_max), with σ from the
    running variance before this batch's update. r_max and d_max relax linearly from 1 and 0
    to their final values over `ramp_steps` training batches (counted by num_batches_tracked).
    Statistics per channel over N (x H x W); BatchRenorm1d and BatchRenorm2d fix the shape.
    """

    def __init__(
        self,
        width: int,
        momentum: float | None,
        eps: float,
        r_max: float,
        d_max: float,
        ramp_steps: float,
    ) -> None:
        super().__init__(width, momentum=momentum, eps=eps)
        self.r_max, self.d_max, self.ramp_steps = r_max, d_max, ramp_steps
        self.xhat = nn.Identity()
        # The last training batch's r, d (C,) and limits (2,), kept for the probes.
        self.last_r: torch.Tensor | None = None
        self.last_d: torch.Tensor | None = None
        self.last_limits: torch.Tensor | None = None

    def limits(self) -> torch.Tensor:
        """(r_max, d_max) for the next training batch."""
        assert self.num_batches_tracked is not None
        done = self.num_batches_tracked.double()
        if self.ramp_steps > 0:
            relaxed = (done / self.ramp_steps).clamp(max=1.0)
        else:
            relaxed = torch.ones_like(done)
        return torch.stack([1 + (self.r_max - 1) * relaxed, self.d_max * relaxed]).float()

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (2, 3, 4))  # the 1d and 2d subclasses narrow it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        assert self.running_mean is not None and self.running_var is not None
        dims = (0, *range(2, x.dim()))
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        std = torch.sqrt(var + self.eps)
        with torch.no_grad():
            running_std = torch.sqrt(self.running_var + self.eps)
            limits = self.limits()
            r_max, d_max = limits[0], limits[1]
            r = torch.clamp(std / running_std, min=1 / r_max, max=r_max)
            d = torch.clamp((mean - self.running_mean) / running_std, min=-d_max, max=d_max)
        self.last_r, self.last_d, self.last_limits = r, d, limits

        def c(vector: torch.Tensor) -> torch.Tensor:
            return per_channel(vector, x)

        xhat = self.xhat((x - c(mean)) / c(std) * c(r) + c(d))
        n = x.numel() // x.shape[1]
        update_running_stats(self, mean.detach(), var.detach() * n / (n - 1))
        out: torch.Tensor = xhat * c(self.weight) + c(self.bias)
        return out


class GhostBatchNorm(_BatchNorm):
    """BN whose statistics come from ghost batches of about `ghost_batch_size` examples
    (Hoffer et al. 2017). The running statistics take one update per step: the mean of the
    ghost batches' means and unbiased variances. GhostBatchNorm1d and 2d fix the shape."""

    def __init__(
        self, width: int, momentum: float | None, eps: float, ghost_batch_size: int
    ) -> None:
        super().__init__(width, momentum=momentum, eps=eps)
        self.ghost_batch_size = ghost_batch_size
        self.xhat = nn.Identity()

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (2, 3, 4))  # the 1d and 2d subclasses narrow it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        mean, var, sizes, ids = ghost_moments(x, self.ghost_batch_size)
        centred = x - per_channel(mean[ids], x)
        xhat = self.xhat(centred / torch.sqrt(per_channel(var[ids], x) + self.eps))
        unbiased = var.detach() * sizes / (sizes - 1)
        update_running_stats(self, mean.detach().mean(dim=0), unbiased.mean(dim=0))
        out: torch.Tensor = xhat * per_channel(self.weight, x) + per_channel(self.bias, x)
        return out


class NoisyBatchNorm(_BatchNorm):
    """BN followed, in training only, by noise that shifts every unit's distribution at every
    step (Santurkar et al. 2018, App. A.2.1): y · (s_j + 0.1 ε) + (μ_j + 0.1 ε′), with per-unit
    (per-channel) μ_j ~ U(-0.5, 0.5) and s_j ~ U(1, 1.25) drawn anew each step, ε, ε′ ~ N(0, 1)
    per element. The noise comes from the layer's own seeded generator."""

    def __init__(self, width: int, momentum: float | None, eps: float, seed: int) -> None:
        super().__init__(width, momentum=momentum, eps=eps)
        self.generator = torch.Generator().manual_seed(seed)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (2, 3, 4))  # the 1d and 2d subclasses narrow it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if not self.training:
            return y
        width = y.shape[1]
        draw = torch.rand(2, width, generator=self.generator)
        low, high = NOISE_SCALE_RANGE
        offset = per_channel((2 * draw[0] - 1) * NOISE_MEAN_RANGE, y)
        scale = per_channel(low + (high - low) * draw[1], y)
        jitter = torch.randn(2, *y.shape, generator=self.generator) * NOISE_JITTER
        noise = torch.stack([scale + jitter[0], offset + jitter[1]]).to(y.device, y.dtype)
        return y * noise[0] + noise[1]


def _expect_dims(x: torch.Tensor, dims: tuple[int, ...]) -> None:
    """The shape check torch's BatchNorm1d (2 or 3 dims) and BatchNorm2d (4) make."""
    if x.dim() not in dims:
        raise ValueError(f"expected {' or '.join(f'{d}D' for d in dims)} input, got {x.dim()}D")


class BatchRenorm1d(BatchRenorm):
    """Batch Renorm of (N, C) or (N, C, L) inputs."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (2, 3))


class BatchRenorm2d(BatchRenorm):
    """Batch Renorm of (N, C, H, W) conv maps, per channel over N x H x W."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (4,))


class GhostBatchNorm1d(GhostBatchNorm):
    """Ghost BN of (N, C) or (N, C, L) inputs."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (2, 3))


class GhostBatchNorm2d(GhostBatchNorm):
    """Ghost BN of (N, C, H, W) conv maps, per channel over the ghost batch's N x H x W."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (4,))


class NoisyBatchNorm1d(NoisyBatchNorm):
    """Noisy BN of (N, C) or (N, C, L) inputs."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (2, 3))


class NoisyBatchNorm2d(NoisyBatchNorm):
    """Noisy BN of (N, C, H, W) conv maps: per-channel shift and scale, per-element jitter."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _expect_dims(input, (4,))


@contextmanager
def restoring_state(model: nn.Module) -> Iterator[None]:
    """Run the block, then put back every buffer (running statistics, batch counts) and every
    noise generator, so forward passes inside it leave training exactly as it was."""
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    generators = [
        (m, m.generator.get_state()) for m in model.modules() if isinstance(m, NoisyBatchNorm)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        for module, state in generators:
            module.generator.set_state(state)


# A hidden layer's normalizer, from the run's config and the layer's index: the torch side of
# covshift.variants (whose entries name these keys). Every one uses config.bn_eps. The config's
# arch picks the module for Linear outputs (N, C) or conv maps (N, C, H, W); for conv maps
# "ln" is GroupNorm with one group (Wu & He 2018): over each example's channels and positions
# with a per-channel γ, β, the LayerNorm of convnets (LayerNorm over (C, H, W) would learn a
# γ per position and tie the network to one image size).
NormFactory = Callable[[RunConfig, int], nn.Module]


def _conv(config: RunConfig) -> bool:
    return config.arch == "cnn"


def _bn(c: RunConfig, layer: int) -> nn.Module:
    kind = nn.BatchNorm2d if _conv(c) else nn.BatchNorm1d
    return kind(c.width, momentum=c.bn_momentum, eps=c.bn_eps)


def _ln(c: RunConfig, layer: int) -> nn.Module:
    return (
        nn.GroupNorm(1, c.width, eps=c.bn_eps) if _conv(c) else nn.LayerNorm(c.width, eps=c.bn_eps)
    )


def _rms(c: RunConfig, layer: int) -> nn.Module:
    return RMSNorm2d(c.width, c.bn_eps) if _conv(c) else nn.RMSNorm(c.width, eps=c.bn_eps)


def _brn(c: RunConfig, layer: int) -> nn.Module:
    kind = BatchRenorm2d if _conv(c) else BatchRenorm1d
    return kind(c.width, c.bn_momentum, c.bn_eps, c.brn_r_max, c.brn_d_max, c.brn_ramp * c.steps)


def _noisy_bn(c: RunConfig, layer: int) -> nn.Module:
    # Its own stream per layer, derived from the run's seed: reproducible, independent.
    seed = c.seed * 1009 + layer + 1
    kind = NoisyBatchNorm2d if _conv(c) else NoisyBatchNorm1d
    return kind(c.width, c.bn_momentum, c.bn_eps, seed=seed)


def _ghost_bn(c: RunConfig, layer: int) -> nn.Module:
    kind = GhostBatchNorm2d if _conv(c) else GhostBatchNorm1d
    return kind(c.width, c.bn_momentum, c.bn_eps, c.ghost_batch_size)


NORMS: dict[str, NormFactory] = {
    "bn": _bn,
    "ln": _ln,
    "gn": lambda c, _: nn.GroupNorm(c.gn_groups, c.width, eps=c.bn_eps),
    "rms": _rms,
    "brn": _brn,
    "noisy_bn": _noisy_bn,
    "ghost_bn": _ghost_bn,
}
