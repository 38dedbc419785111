"""The normalizers beyond torch's own: Batch Renorm, noisy BN and ghost BN, and what all share.

Every normalizer here keeps BatchNorm1d's buffers (running_mean, running_var,
num_batches_tracked), momentum rule and eval-mode behaviour (running statistics),
so the trainer's controls, the probes and the inference statistics treat them
like BN. Each one's x̂, as it computed it, passes through an `nn.Identity` named
`xhat`, so a forward hook can read it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from covshift.config import RunConfig

# Santurkar et al. (2018), App. A.2.1, as issue 6 summarises it: per unit and step, a mean
# from U(-0.5, 0.5) and a scale from U(1, 1.25); per element, jitter of std 0.1. Applying
# them as y * scale + mean (each jittered) is our reading of "non-zero mean, non-unit variance".
NOISE_MEAN_RANGE = 0.5
NOISE_SCALE_RANGE = (1.0, 1.25)
NOISE_JITTER = 0.1


def has_running_stats(norm: nn.Module | None) -> bool:
    """Whether a normalizer keeps running statistics (and so differs in train and eval mode)."""
    return isinstance(norm, nn.BatchNorm1d)


@torch.no_grad()
def update_running_stats(norm: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor) -> None:
    """BatchNorm1d's rule: running = (1 - m) running + m batch; m = 1/t when momentum is None.

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
    """Per ghost batch: mean and biased variance (k, C), size (k, 1); and each row's ghost id."""
    count = ghost_count(x.shape[0], ghost_batch_size)
    ids = torch.arange(x.shape[0], device=x.device) * count // x.shape[0]
    sizes = torch.bincount(ids, minlength=count).to(x.dtype)[:, None]
    sums = torch.zeros(count, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, ids, x)
    mean = sums / sizes
    centred = x - mean[ids]
    var = torch.zeros_like(sums).index_add(0, ids, centred * centred) / sizes
    return mean, var, sizes, ids


def batch_moments(norm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The means and unbiased variances a BN-like norm uses in training: (k, C) each, one row
    per batch (per ghost batch for ghost BN)."""
    if isinstance(norm, GhostBatchNorm1d):
        mean, var, sizes, _ = ghost_moments(x, norm.ghost_batch_size)
        return mean, var * sizes / (sizes - 1)
    return x.mean(dim=0, keepdim=True), x.var(dim=0, keepdim=True)


def normalized(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x̂ of torch's own normalizers, recomputed from their input (training mode)."""
    if isinstance(norm, nn.LayerNorm):
        return F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
    if isinstance(norm, nn.GroupNorm):
        return F.group_norm(x, norm.num_groups, eps=norm.eps)
    if isinstance(norm, nn.RMSNorm):
        return F.rms_norm(x, norm.normalized_shape, eps=norm.eps)
    if isinstance(norm, nn.BatchNorm1d):
        # Training-mode batch norm without affine or running buffers is exactly x̂.
        return F.batch_norm(x, None, None, training=True, eps=norm.eps)
    raise TypeError(f"no x̂ for {type(norm).__name__}")


class BatchRenorm1d(nn.BatchNorm1d):
    """Batch Renormalization (Ioffe 2017): x̂ = (x - μB)/σB · r + d, r and d held constant
    in the backward pass; eval mode uses the running statistics, as BN.

    r = clip(σB/σ, 1/r_max, r_max), d = clip((μB - μ)/σ, -d_max, d_max), with σ from the
    running variance before this batch's update. r_max and d_max relax linearly from 1 and 0
    to their final values over `ramp_steps` training batches (counted by num_batches_tracked).
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        assert self.running_mean is not None and self.running_var is not None
        mean = x.mean(dim=0)
        var = x.var(dim=0, unbiased=False)
        std = torch.sqrt(var + self.eps)
        with torch.no_grad():
            running_std = torch.sqrt(self.running_var + self.eps)
            limits = self.limits()
            r_max, d_max = limits[0], limits[1]
            r = torch.clamp(std / running_std, min=1 / r_max, max=r_max)
            d = torch.clamp((mean - self.running_mean) / running_std, min=-d_max, max=d_max)
        self.last_r, self.last_d, self.last_limits = r, d, limits
        xhat = self.xhat((x - mean) / std * r + d)
        n = x.shape[0]
        update_running_stats(self, mean.detach(), var.detach() * n / (n - 1))
        out: torch.Tensor = xhat * self.weight + self.bias
        return out


class GhostBatchNorm1d(nn.BatchNorm1d):
    """BN whose statistics come from ghost batches of about `ghost_batch_size` examples
    (Hoffer et al. 2017). The running statistics take one update per step: the mean of the
    ghost batches' means and unbiased variances."""

    def __init__(
        self, width: int, momentum: float | None, eps: float, ghost_batch_size: int
    ) -> None:
        super().__init__(width, momentum=momentum, eps=eps)
        self.ghost_batch_size = ghost_batch_size
        self.xhat = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        mean, var, sizes, ids = ghost_moments(x, self.ghost_batch_size)
        xhat = self.xhat((x - mean[ids]) / torch.sqrt(var[ids] + self.eps))
        unbiased = var.detach() * sizes / (sizes - 1)
        update_running_stats(self, mean.detach().mean(dim=0), unbiased.mean(dim=0))
        out: torch.Tensor = xhat * self.weight + self.bias
        return out


class NoisyBatchNorm1d(nn.BatchNorm1d):
    """BN followed, in training only, by noise that shifts every unit's distribution at every
    step (Santurkar et al. 2018, App. A.2.1): y · (s_j + 0.1 ε) + (μ_j + 0.1 ε′), with per-unit
    μ_j ~ U(-0.5, 0.5) and s_j ~ U(1, 1.25) drawn anew each step, ε, ε′ ~ N(0, 1) per element.
    The noise comes from the layer's own seeded generator."""

    def __init__(self, width: int, momentum: float | None, eps: float, seed: int) -> None:
        super().__init__(width, momentum=momentum, eps=eps)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if not self.training:
            return y
        batch, width = y.shape
        draw = torch.rand(2, width, generator=self.generator)
        low, high = NOISE_SCALE_RANGE
        offset = (2 * draw[0] - 1) * NOISE_MEAN_RANGE
        scale = low + (high - low) * draw[1]
        jitter = torch.randn(2, batch, width, generator=self.generator) * NOISE_JITTER
        noise = torch.stack([scale + jitter[0], offset + jitter[1]]).to(y.device, y.dtype)
        return y * noise[0] + noise[1]


@contextmanager
def restoring_state(model: nn.Module) -> Iterator[None]:
    """Run the block, then put back every buffer (running statistics, batch counts) and every
    noise generator, so forward passes inside it leave training exactly as it was."""
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    generators = [
        (m, m.generator.get_state()) for m in model.modules() if isinstance(m, NoisyBatchNorm1d)
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
# covshift.variants (whose entries name these keys). Every one uses config.bn_eps.
NormFactory = Callable[[RunConfig, int], nn.Module]


def _noisy_bn(config: RunConfig, layer: int) -> nn.Module:
    # Its own stream per layer, derived from the run's seed: reproducible, independent.
    seed = config.seed * 1009 + layer + 1
    return NoisyBatchNorm1d(config.width, config.bn_momentum, config.bn_eps, seed=seed)


NORMS: dict[str, NormFactory] = {
    "bn": lambda c, _: nn.BatchNorm1d(c.width, momentum=c.bn_momentum, eps=c.bn_eps),
    "ln": lambda c, _: nn.LayerNorm(c.width, eps=c.bn_eps),
    "gn": lambda c, _: nn.GroupNorm(c.gn_groups, c.width, eps=c.bn_eps),
    "rms": lambda c, _: nn.RMSNorm(c.width, eps=c.bn_eps),
    "brn": lambda c, _: BatchRenorm1d(
        c.width, c.bn_momentum, c.bn_eps, c.brn_r_max, c.brn_d_max, c.brn_ramp * c.steps
    ),
    "noisy_bn": _noisy_bn,
    "ghost_bn": lambda c, _: GhostBatchNorm1d(c.width, c.bn_momentum, c.bn_eps, c.ghost_batch_size),
}
