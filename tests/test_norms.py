"""The normalizers against NumPy reimplementations: BN, Batch Renorm (x̂, r, d, running
statistics, r and d constant in backward), ghost BN as per-sub-batch BN, LayerNorm and
GroupNorm per-example statistics, noisy BN's formula; state restored by restoring_state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from covshift.config import RunConfig
from covshift.train.models import build_variants
from covshift.train.norms import (
    NOISE_JITTER,
    BatchRenorm1d,
    GhostBatchNorm1d,
    NoisyBatchNorm1d,
    restoring_state,
)
from covshift.train.probes import capture, tap_values
from pydantic import ValidationError
from torch import nn
from torch.nn import functional as F

EPS = 1e-5


def numpy_bn_step(
    x: np.ndarray, running: tuple[np.ndarray, np.ndarray], momentum: float
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Ioffe & Szegedy, Algorithm 1 (γ = 1, β = 0), and PyTorch's running-average update."""
    mean, var = x.mean(0), x.var(0)
    xhat = (x - mean) / np.sqrt(var + EPS)
    unbiased = var * len(x) / (len(x) - 1)
    running_mean = (1 - momentum) * running[0] + momentum * mean
    running_var = (1 - momentum) * running[1] + momentum * unbiased
    return xhat, (running_mean, running_var)


def numpy_brn_step(
    x: np.ndarray,
    running: tuple[np.ndarray, np.ndarray],
    momentum: float,
    limits: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Ioffe (2017), Algorithm 1, with σ from the running variance: x̂, r, d, new running."""
    r_max, d_max = limits
    mean, var = x.mean(0), x.var(0)
    std, running_std = np.sqrt(var + EPS), np.sqrt(running[1] + EPS)
    r = np.clip(std / running_std, 1 / r_max, r_max)
    d = np.clip((mean - running[0]) / running_std, -d_max, d_max)
    xhat = (x - mean) / std * r + d
    _, updated = numpy_bn_step(x, running, momentum)
    return xhat, r, d, updated


def _inputs(steps: int, batch: int = 24, width: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    # A drifting distribution, so r and d move away from 1 and 0 and get clipped.
    return [rng.normal(2.0 * t, 1.0 + t, size=(batch, width)) for t in range(steps)]


def test_batchnorm_matches_numpy_algorithm_1_and_its_running_averages() -> None:
    norm = nn.BatchNorm1d(5, momentum=0.1, eps=EPS).double()
    running = (np.zeros(5), np.ones(5))
    for x in _inputs(4):
        expected, running = numpy_bn_step(x, running, 0.1)
        out = norm(torch.from_numpy(x))
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(norm.running_mean.numpy(), running[0], rtol=1e-12)
        np.testing.assert_allclose(norm.running_var.numpy(), running[1], rtol=1e-12)


@pytest.mark.parametrize("momentum", [0.3, None])
def test_batch_renorm_matches_numpy_with_ramped_limits(momentum: float | None) -> None:
    ramp = 4.0  # r_max 1 -> 3 and d_max 0 -> 0.5 over 4 batches
    norm = BatchRenorm1d(5, momentum, eps=EPS, r_max=3.0, d_max=0.5, ramp_steps=ramp).double()
    running = (np.zeros(5), np.ones(5))
    clipped = 0
    for t, x in enumerate(_inputs(6)):
        limits = (1 + 2.0 * min(t / ramp, 1.0), 0.5 * min(t / ramp, 1.0))
        weight = momentum if momentum is not None else 1 / (t + 1)  # None: cumulative average
        expected, r, d, running = numpy_brn_step(x, running, weight, limits)
        with capture_xhat(norm) as seen:
            out = norm(torch.from_numpy(x))
        np.testing.assert_allclose(seen[0].numpy(), expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-9, atol=1e-9)
        assert norm.last_r is not None and norm.last_d is not None
        assert norm.last_limits is not None
        np.testing.assert_allclose(norm.last_r.numpy(), r, rtol=1e-9)
        np.testing.assert_allclose(norm.last_d.numpy(), d, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(norm.last_limits.numpy(), limits, rtol=1e-6)
        np.testing.assert_allclose(norm.running_mean.numpy(), running[0], rtol=1e-12)
        np.testing.assert_allclose(norm.running_var.numpy(), running[1], rtol=1e-12)
        clipped += int((np.abs(d) == limits[1]).sum() + (r == limits[0]).sum())
    assert clipped > 0, "the inputs must exercise the clipping"
    norm.eval()  # inference: the running statistics, as BN
    x = torch.from_numpy(_inputs(1)[0])
    expected_eval = (x.numpy() - running[0]) / np.sqrt(running[1] + EPS)
    np.testing.assert_allclose(norm(x).detach().numpy(), expected_eval, rtol=1e-9, atol=1e-9)


@contextmanager
def capture_xhat(norm: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record what passes through a normalizer's x̂ tap."""
    seen: list[torch.Tensor] = []
    xhat = norm.xhat
    assert isinstance(xhat, nn.Module)
    handle = xhat.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        yield seen
    finally:
        handle.remove()


def test_batch_renorm_treats_r_and_d_as_constants_in_backward() -> None:
    torch.manual_seed(0)
    norm = BatchRenorm1d(4, momentum=0.1, eps=EPS, r_max=3.0, d_max=5.0, ramp_steps=0).double()
    with torch.no_grad():
        norm.running_mean.fill_(0.7)
        norm.running_var.fill_(0.2)
    x = (torch.randn(16, 4, dtype=torch.float64) * 2).requires_grad_()
    weights = torch.randn(16, 4, dtype=torch.float64)
    (norm(x) * weights).sum().backward()
    assert norm.last_r is not None
    # x̂_brn = r·x̂_bn + d with r, d constants, so dL/dx is r times BN's (per channel).
    x_bn = x.detach().clone().requires_grad_()
    (F.batch_norm(x_bn, None, None, training=True, eps=EPS) * weights).sum().backward()
    assert x.grad is not None and x_bn.grad is not None
    torch.testing.assert_close(x.grad, x_bn.grad * norm.last_r, rtol=1e-9, atol=1e-12)


def test_ghost_bn_is_batchnorm_on_each_sub_batch() -> None:
    norm = GhostBatchNorm1d(5, momentum=0.1, eps=EPS, ghost_batch_size=8).double()
    x = torch.from_numpy(_inputs(3, batch=24)[2])
    out = norm(x)
    parts = [F.batch_norm(part, None, None, training=True, eps=EPS) for part in x.split(8)]
    torch.testing.assert_close(out, torch.cat(parts))
    chunks = x.numpy().reshape(3, 8, 5)
    expected_mean = 0.1 * chunks.mean(1).mean(0)
    expected_var = 0.9 + 0.1 * chunks.var(1, ddof=1).mean(0)
    np.testing.assert_allclose(norm.running_mean.numpy(), expected_mean, rtol=1e-12)
    np.testing.assert_allclose(norm.running_var.numpy(), expected_var, rtol=1e-12)


@pytest.mark.parametrize(("batch", "sizes"), [(26, [9, 9, 8]), (5, [5]), (16, [8, 8])])
def test_ghost_batches_share_out_the_remainder(batch: int, sizes: list[int]) -> None:
    norm = GhostBatchNorm1d(3, momentum=0.1, eps=EPS, ghost_batch_size=8).double()
    x = torch.randn(batch, 3, dtype=torch.float64)
    parts = [
        F.batch_norm(part, None, None, training=True, eps=EPS) for part in x.split_with_sizes(sizes)
    ]
    torch.testing.assert_close(norm(x), torch.cat(parts))


@pytest.mark.parametrize("variant", ["ln", "gn"])
def test_layer_and_group_norm_xhat_is_standardised_per_example(variant: str) -> None:
    config = RunConfig(variants=(variant,), depth=1, width=12, gn_groups=3)
    model = build_variants(config, 6, 3, torch.device("cpu"))[variant]
    x = torch.randn(10, 6) * 4 + 1
    with capture(model) as layers:
        model(x)
    (taps,) = tap_values(model, layers)
    groups = 1 if variant == "ln" else 3
    pre = layers[0]["norm_input"].double().numpy().reshape(10, groups, -1)
    expected = (pre - pre.mean(2, keepdims=True)) / np.sqrt(pre.var(2, keepdims=True) + EPS)
    xhat = taps["norm_xhat"].double().numpy()
    np.testing.assert_allclose(xhat, expected.reshape(10, 12), rtol=1e-4, atol=1e-5)
    assert np.abs(xhat.reshape(10, groups, -1).mean(2)).max() < 1e-5


def test_rms_norm_matches_torch_functional_and_numpy() -> None:
    # RMSNorm (the normalizer of most current language models): x / sqrt(mean(x^2) + eps) · γ,
    # per example, with no mean subtraction and no β.
    config = RunConfig(variants=("rms",), depth=1, width=8, init="default", seed=2)
    model = build_variants(config, 5, 3, torch.device("cpu"))["rms"]
    block = model.hidden()[0]
    assert isinstance(block.norm, nn.RMSNorm) and not hasattr(block.norm, "bias")
    with torch.no_grad():
        block.norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(7, 5) * 3 + 2
    with capture(model) as layers:
        model(x)
    (taps,) = tap_values(model, layers)
    pre = layers[0]["norm_input"]
    oracle = F.rms_norm(pre, (8,), weight=block.norm.weight, eps=EPS)
    torch.testing.assert_close(taps["norm_out"], oracle)
    p = pre.double().numpy()
    xhat = p / np.sqrt((p**2).mean(1, keepdims=True) + EPS)
    np.testing.assert_allclose(taps["norm_xhat"].double().numpy(), xhat, rtol=1e-5, atol=1e-6)
    # Not centred (unlike LayerNorm): an input shifted by a constant keeps part of it in x̂.
    shifted = nn.RMSNorm(5, eps=EPS, elementwise_affine=False)(x)
    assert float(shifted.mean()) > 0.3


def test_noisy_bn_is_bn_times_and_plus_seeded_noise_in_training_only() -> None:
    norm = NoisyBatchNorm1d(6, momentum=0.1, eps=EPS, seed=11)
    x = torch.randn(20, 6) * 3
    out = norm(x)
    clean = F.batch_norm(x, None, None, training=True, eps=EPS)
    generator = torch.Generator().manual_seed(11)
    draw = torch.rand(2, 6, generator=generator)
    jitter = torch.randn(2, 20, 6, generator=generator) * NOISE_JITTER
    offset, scale = draw[0] - 0.5, 1 + 0.25 * draw[1]
    torch.testing.assert_close(out, clean * (scale + jitter[0]) + offset + jitter[1])
    assert not torch.equal(norm(x), out), "fresh noise every step"
    norm.eval()
    reference = nn.BatchNorm1d(6, eps=EPS)
    reference.load_state_dict(norm.state_dict())
    torch.testing.assert_close(norm(x), reference.eval()(x))


def test_restoring_state_puts_back_buffers_and_noise() -> None:
    config = RunConfig(variants=("noisy_bn", "brn"), depth=2, width=8)
    for model in build_variants(config, 4, 2, torch.device("cpu")).values():
        x = torch.randn(16, 4)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with restoring_state(model):
            first = model(x)
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
        torch.testing.assert_close(model(x), first)  # the same noise and statistics again


def test_weight_norm_starts_from_the_plain_weights_and_trains_g_and_v() -> None:
    config = RunConfig(variants=("plain", "wn"), depth=2, width=8, init="default")
    models = build_variants(config, 4, 2, torch.device("cpu"))
    for plain, normed in zip(models["plain"].linears(), models["wn"].linears(), strict=True):
        torch.testing.assert_close(plain.weight, normed.weight)
    names = {name for name, _ in models["wn"].hidden()[0].named_parameters()}
    assert names == {
        "linear.bias",
        "linear.parametrizations.weight.original0",
        "linear.parametrizations.weight.original1",
    }


def test_group_count_must_divide_the_width() -> None:
    with pytest.raises(ValidationError, match="gn_groups: 3 does not divide width 16"):
        RunConfig(variants=("gn",), width=16, gn_groups=3)
    assert RunConfig(variants=("plain",), width=16, gn_groups=3).gn_groups == 3
