"""Probes: hooks never outlive `capture`, x̂ is standardised, BN's running statistics follow
their update rule (checked against a NumPy recomputation from the frames)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from covshift.config import RunConfig
from covshift.train.models import build_variants
from covshift.train.normstats import channel_moments
from covshift.train.probes import capture, tap_values
from covshift.train.trainer import Trainer
from scipy.stats import wasserstein_distance


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_capture_removes_its_hooks_even_when_the_forward_fails() -> None:
    model = build_variants(RunConfig(depth=2, width=8), 64, 10, torch.device("cpu"))["bn"]
    with capture(model) as layers:
        model(torch.randn(6, 64))
        assert _hook_count(model) > 0
    assert _hook_count(model) == 0
    assert set(layers[0]) == {"linear_out", "norm_input", "norm_out", "act_input", "act_output"}
    with pytest.raises(RuntimeError), capture(model):
        model(torch.randn(6, 3))  # wrong input width
    assert _hook_count(model) == 0


def test_xhat_has_zero_mean_and_unit_variance_per_feature_in_training() -> None:
    model = build_variants(RunConfig(depth=2, width=32), 64, 10, torch.device("cpu"))["bn"]
    x = torch.randn(128, 64) * 3 + 2
    with capture(model) as layers:
        model(x)
    for store, taps in zip(layers, tap_values(model, layers), strict=True):
        xhat = taps["norm_xhat"].double()
        assert xhat.mean(0).abs().max() < 1e-5  # float32 arithmetic
        # Variance 1 up to BN's eps: var(x̂) = var(x) / (var(x) + eps), exactly.
        var = store["norm_input"].double().var(0, unbiased=False)
        expected = var / (var + 1e-5)
        assert (xhat.var(0, unbiased=False) - expected).abs().max() < 1e-5
        assert (expected > 0.99).all()
        # and gamma x̂ + beta is what BN output (gamma=1, beta=0 at init)
        assert torch.allclose(taps["norm_out"], taps["norm_xhat"], atol=1e-5)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_statistics_follow_the_update_rule(momentum: float | None) -> None:
    config = RunConfig(
        depth=2, width=12, batch_size=16, steps=12, probe_every=1, bn_momentum=momentum
    )
    trainer = Trainer(config)
    frames = []
    while not trainer.done:
        frames += [m for m in trainer.train_step() if m["type"] == "frame"]
    running_mean = np.zeros(12)
    running_var = np.ones(12)
    for t, frame in enumerate(frames, start=1):
        bn = frame["variants"]["bn"]["layers"][1]["bn"]
        # m is the weight of the newest batch; None means the cumulative average (1/t)
        m = momentum if momentum is not None else 1.0 / t
        running_mean = (1 - m) * running_mean + m * np.array(bn["batch_mean"])
        running_var = (1 - m) * running_var + m * np.array(bn["batch_var"])
        np.testing.assert_allclose(bn["running_mean"], running_mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(bn["running_var"], running_var, rtol=1e-4, atol=1e-6)


def test_frame_batch_statistics_match_a_numpy_recomputation() -> None:
    config = RunConfig(depth=1, width=10, batch_size=20, steps=3, probe_every=1, ics_every=0)
    trainer = Trainer(config)
    inputs: list[torch.Tensor] = []
    linear = trainer.models["bn"].hidden()[0].linear
    handle = linear.register_forward_hook(lambda m, i, o: inputs.append(o.detach().clone()))
    frame = next(m for m in trainer.train_step() if m["type"] == "frame")
    handle.remove()
    # The test-set passes come first (train mode in batches of 20 too), then the training
    # forward, then the fixed probe set's (256 rows).
    batch = [seen for seen in inputs if seen.shape[0] == 20][-1]
    pre = batch.double().numpy()
    bn = frame["variants"]["bn"]["layers"][0]["bn"]
    np.testing.assert_allclose(bn["batch_mean"], pre.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bn["batch_var"], pre.var(0, ddof=1), rtol=1e-5, atol=1e-7)
    taps = frame["variants"]["bn"]["layers"][0]["taps"]
    xhat = (pre - pre.mean(0)) / np.sqrt(pre.var(0) + 1e-5)
    np.testing.assert_allclose(
        taps["norm_xhat"]["percentiles"],
        np.percentile(xhat, [1, 15, 50, 85, 99]),
        rtol=1e-4,
        atol=1e-5,
    )
    assert (
        sum(taps["linear_out"]["counts"])
        + taps["linear_out"]["underflow"]
        + taps["linear_out"]["overflow"]
        == 20 * 10
    )


def _act_input_frames(config: RunConfig, frames: int) -> tuple[Trainer, list[dict[str, Any]]]:
    trainer = Trainer(config)
    found: list[dict[str, Any]] = []
    while len(found) < frames:
        found += [m for m in trainer.train_step() if m["type"] == "frame"]
    return trainer, found


def test_windowed_drift_matches_scipy_against_the_frame_drift_window_back() -> None:
    window = 3
    config = RunConfig(
        depth=2, width=8, batch_size=16, steps=20, probe_every=1, ics_every=0, drift_window=window
    )
    trainer, frames = _act_input_frames(config, 8)
    for variant in config.variants:
        for layer in range(config.depth):
            edges = trainer.probe.edges[variant, layer, "act_input"].double().numpy()
            width = edges[1] - edges[0]
            centres = np.concatenate(
                [[edges[0] - width / 2], edges[:-1] + width / 2, [edges[-1] + width / 2]]
            )
            entries = [f["variants"][variant]["layers"][layer] for f in frames]
            full = [
                np.array(
                    [
                        e["taps"]["act_input"]["underflow"],
                        *e["taps"]["act_input"]["counts"],
                        e["taps"]["act_input"]["overflow"],
                    ],
                    dtype=np.float64,
                )
                for e in entries
            ]
            assert entries[0]["drift"] is None  # nothing to compare the first frame with
            for n in range(1, len(frames)):
                # drift_window frames back, or the oldest kept (the first) while fewer exist
                earlier = full[max(0, n - window)]
                expected = wasserstein_distance(centres, centres, earlier, full[n])
                got = entries[n]["drift"]["w1_window"]
                assert got == pytest.approx(expected, rel=1e-4, abs=1e-7)
                if n <= window:
                    assert got == pytest.approx(entries[n]["drift"]["w1_start"], rel=1e-6)


def test_windowed_drift_of_one_frame_is_the_frame_to_frame_drift() -> None:
    config = RunConfig(
        depth=1, width=8, batch_size=16, steps=10, probe_every=1, ics_every=0, drift_window=1
    )
    _, frames = _act_input_frames(config, 5)
    drifts = [f["variants"][v]["layers"][0]["drift"] for f in frames[1:] for v in config.variants]
    assert all(d["w1_window"] == d["w1"] for d in drifts)
    assert any(d["w1"] > 0 for d in drifts)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_saturated_and_dead_fractions_match_a_direct_count(activation: str) -> None:
    """Counted in the sorted rows; the oracle compares the float32 tensor directly, on
    values placed exactly at, just inside and just outside the thresholds, and NaN."""
    from covshift.train.packing import Packer

    trainer = Trainer(RunConfig(activation=activation, depth=2, width=10, batch_size=12))
    x, _ = trainer.next_batch()
    values = {}
    for variant, model in trainer.models.items():
        with capture(model) as layers:
            model(x)
        values[variant] = tap_values(model, layers)
    low, high = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, 0.0)}[activation]
    f32 = np.float32
    edges = [f32(low + 0.01), f32(high - 0.01), f32(0.0), f32(-0.0)]
    around = [v for e in edges for v in (np.nextafter(e, f32(-1)), e, np.nextafter(e, f32(1)))]
    crafted = values["plain"][0]["act_output"].clone()
    flat = crafted.view(-1)
    flat[: len(around)] = torch.tensor(around, dtype=torch.float32)
    flat[len(around)] = float("nan")
    crafted[:, 3] = 0.0  # one unit dead for the whole batch (ReLU)
    values["plain"][0]["act_output"] = crafted
    packer = Packer()
    frame = packer.resolve({"layers": trainer.probe.reduce(values, trainer.models, packer)})
    for variant, layers in values.items():
        for layer, taps in enumerate(layers):
            out = taps["act_output"]
            got = frame["layers"][variant][layer]
            if activation == "relu":
                # Written to 9 significant digits; one value counted wrong is 1/120 off.
                assert got["dead"] == pytest.approx(int((out <= 0).sum()) / out.numel(), rel=1e-8)
                dead_units = (out <= 0).all(0).double().mean().item()
                assert got["dead_units"] == pytest.approx(dead_units, rel=1e-7)
            else:
                hit = (out < low + 0.01) | (out > high - 0.01)
                assert got["saturated"] == pytest.approx(int(hit.sum()) / out.numel(), rel=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_channel_moments_are_numpys_float64_mean_and_unbiased_variance(
    dtype: torch.dtype,
) -> None:
    """BN's batch moments per channel: over the batch for a (N, C) input, over N x H x W for
    a conv map; inputs of one shape reduced together, others apart, each in its place; a
    precision NumPy has no type for (bfloat16) taken as its float values."""
    generator = torch.Generator().manual_seed(5)
    dense = [torch.randn(40, 7, generator=generator) * 3 + 1 for _ in range(2)]
    conv = torch.randn(6, 3, 4, 5, generator=generator) - 2
    inputs = [dense[0].to(dtype), conv.to(dtype), dense[1].to(dtype)]
    found = channel_moments(inputs)
    for x, pair in zip(inputs, found, strict=True):
        values = x.double().numpy()
        axes = (0,) if values.ndim == 2 else (0, 2, 3)
        assert pair.shape == (2, values.shape[1]) and pair.dtype == np.float64
        np.testing.assert_allclose(pair[0], values.mean(axis=axes), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(pair[1], values.var(axis=axes, ddof=1), rtol=1e-12)
