"""Gradient ICS against a by-hand two-layer computation (Santurkar et al. Definition 2.1), the
landscape along the gradient against explicit steps, and training untouched by measuring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from covshift.config import RunConfig
from covshift.train import ics
from covshift.train.data import Dataset
from covshift.train.models import MLP, build_variants
from covshift.train.trainer import Trainer


def _two_layer(variant: str = "plain") -> MLP:
    config = RunConfig(variants=(variant,), depth=1, width=5, init="default", seed=2)
    return build_variants(config, 3, 4, torch.device("cpu"))[variant].double()


def _numpy_gradients(
    w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backprop by hand through sigmoid(x W1ᵀ + b1) W2ᵀ + b2 and mean cross-entropy:
    the gradients of W1, b1 and W2."""
    h = 1 / (1 + np.exp(-(x @ w1.T + b1)))
    z = h @ w2.T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(w2.shape[0])[y]) / len(x)
    dpre = (dz @ w2) * h * (1 - h)
    return dpre.T @ x, dpre.sum(0), dz.T @ h


def test_gradient_shift_of_the_second_layer_matches_a_by_hand_update_of_the_first() -> None:
    model = _two_layer()
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 3)), rng.integers(0, 4, size=8)
    lr = 0.7
    w1, b1 = (
        t.detach().numpy().copy()
        for t in (model.blocks[0].linear.weight, model.blocks[0].linear.bias)
    )
    w2, b2 = model.head.weight.detach().numpy(), model.head.bias.detach().numpy()
    dw1, db1, g = _numpy_gradients(w1, b1, w2, b2, x, y)
    # Layer 1 takes its SGD step on the same batch; layer 2 is unchanged.
    _, _, g_after = _numpy_gradients(w1 - lr * dw1, b1 - lr * db1, w2, b2, x, y)

    result = ics.measure(
        ics.snapshot(model),
        torch.from_numpy(x),
        torch.from_numpy(y),
        torch.nn.CrossEntropyLoss(),
        lr,
    )
    first, second = result["layers"].numpy()
    np.testing.assert_allclose(first, [0.0, 1.0, np.linalg.norm(dw1)], rtol=1e-9)
    expected_cos = (g * g_after).sum() / (np.linalg.norm(g) * np.linalg.norm(g_after))
    np.testing.assert_allclose(
        second, [np.linalg.norm(g - g_after), expected_cos, np.linalg.norm(g)], rtol=1e-9
    )
    assert second[0] > 0


def test_landscape_losses_are_the_losses_at_explicit_steps_along_the_gradient() -> None:
    model = _two_layer("bn")
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 4, (16,))
    loss_fn = torch.nn.CrossEntropyLoss()
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    result = ics.measure(ics.snapshot(model), x, y, loss_fn, 0.5)
    g_norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    expected, changes = [], []
    for multiple in ics.LANDSCAPE_STEPS:
        moved = ics.snapshot(model)
        with torch.no_grad():
            for parameter, grad in zip(moved.parameters(), grads, strict=True):
                parameter -= 0.5 * multiple * grad
        moved_loss = loss_fn(moved(x), y)
        moved_grads = torch.autograd.grad(moved_loss, list(moved.parameters()))
        expected.append(float(moved_loss.detach()))
        change = torch.cat([(a - b).reshape(-1) for a, b in zip(moved_grads, grads, strict=True)])
        changes.append(float(torch.linalg.vector_norm(change)))
    np.testing.assert_allclose(result["loss"].numpy(), expected, rtol=1e-9)
    every = [float(loss.detach()), *expected]
    assert float(result["loss_range"]) == pytest.approx(max(every) - min(every))
    assert float(result["grad_predictiveness"]) == pytest.approx(max(changes))
    smoothness = [
        c / (0.5 * m * float(g_norm)) for c, m in zip(changes, ics.LANDSCAPE_STEPS, strict=True)
    ]
    assert float(result["beta_smoothness"]) == pytest.approx(max(smoothness))


def test_measuring_ics_leaves_training_exactly_as_it_was(digits: Dataset) -> None:
    variants = ("plain", "bn", "brn", "noisy_bn", "wn")
    base = RunConfig(variants=variants, depth=2, width=8, steps=6, probe_every=3, test_every=3)
    runs = {}
    for every in (0, 1):
        trainer = Trainer(base.model_copy(update={"ics_every": every}), digits)
        frames = []
        while not trainer.done:
            frames += [m for m in trainer.train_step() if m["type"] == "frame"]
        runs[every] = (trainer, frames)
    for variant in variants:
        quiet, measured = runs[0][0].models[variant], runs[1][0].models[variant]
        for a, b in zip(quiet.state_dict().values(), measured.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert all("ics" not in v for f in runs[0][1] for v in f["variants"].values())
    measured_frame = runs[1][1][1]
    ics_entry = measured_frame["variants"]["bn"]["ics"]
    assert len(ics_entry["layers"]) == 3  # two hidden layers and the head
    assert ics_entry["layers"][0]["grad_diff"] == 0.0
    assert len(ics_entry["landscape"]["loss"]) == len(ics.LANDSCAPE_STEPS)
