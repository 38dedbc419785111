"""Test-time statistics against NumPy: population statistics by Ioffe & Szegedy's Algorithm 2
(m/(m-1) correction), train-mode ("forgot eval()") accuracy per test batch, and no change
to training state from scoring."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from covshift.config import RunConfig
from covshift.train import inference
from covshift.train.data import Dataset
from covshift.train.inference import (
    evaluate,
    population_statistics,
    running_stat_norms,
    train_mode_logits,
)
from covshift.train.models import MLP, build_variants
from covshift.train.trainer import Trainer

EPS = 1e-5


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _model() -> MLP:
    config = RunConfig(variants=("bn",), depth=2, width=6, init="default", seed=3)
    model = build_variants(config, 4, 3, torch.device("cpu"))["bn"].double()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # trained-looking γ, β and running statistics, not the defaults
        for block in model.hidden():
            assert block.norm is not None
            for tensor in (block.norm.weight, block.norm.bias, block.norm.running_mean):
                tensor.copy_(torch.rand(6, generator=generator, dtype=torch.float64) + 0.5)
    return model


def _params(model: MLP) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    layers = []
    for block in model.hidden():
        assert block.norm is not None
        layers.append(
            (
                block.linear.weight.detach().numpy(),
                block.norm.weight.detach().numpy(),
                block.norm.bias.detach().numpy(),
            )
        )
    return layers


def _numpy_population(model: MLP, x: np.ndarray, m: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Algorithm 2: the training network on consecutive batches of m; E = mean of batch means,
    Var = m/(m-1) · mean of biased batch variances."""
    params = _params(model)
    means: list[list[np.ndarray]] = [[] for _ in params]
    variances: list[list[np.ndarray]] = [[] for _ in params]
    for start in range(0, len(x) // m * m, m):
        h = x[start : start + m]
        for k, (weight, gamma, beta) in enumerate(params):
            pre = h @ weight.T
            means[k].append(pre.mean(0))
            variances[k].append(pre.var(0))
            h = _sigmoid(gamma * (pre - pre.mean(0)) / np.sqrt(pre.var(0) + EPS) + beta)
    return [
        (np.mean(mu, 0), m / (m - 1) * np.mean(v, 0))
        for mu, v in zip(means, variances, strict=True)
    ]


def _numpy_logits(model: MLP, x: np.ndarray, stats: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    h = x
    for (weight, gamma, beta), (mean, var) in zip(_params(model), stats, strict=True):
        h = _sigmoid(gamma * (h @ weight.T - mean) / np.sqrt(var + EPS) + beta)
    return h @ model.head.weight.detach().numpy().T + model.head.bias.detach().numpy()


def _data() -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        "toy",
        torch.from_numpy(rng.normal(size=(100, 4))),
        torch.zeros(100, dtype=torch.long),
        torch.from_numpy(rng.normal(size=(50, 4))),
        torch.from_numpy(rng.integers(0, 3, size=50)),
        3,
    )


def test_population_statistics_match_algorithm_2_in_numpy() -> None:
    model = _model()
    data = _data()
    found = population_statistics(model, data.x_train, 16)  # 6 batches of 16; 4 left out
    expected = _numpy_population(model, data.x_train.numpy(), 16)
    for (mean, var), (want_mean, want_var) in zip(found, expected, strict=True):
        np.testing.assert_allclose(mean.numpy(), want_mean, rtol=1e-10)
        np.testing.assert_allclose(var.numpy(), want_var, rtol=1e-10)


def test_three_accuracies_match_numpy_and_leave_training_state_alone() -> None:
    model = _model()
    data = _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = evaluate(model, data, 16, torch.nn.CrossEntropyLoss())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model.training
    x, y = data.x_test.numpy(), data.y_test.numpy()
    running = [(b.norm.running_mean.numpy(), b.norm.running_var.numpy()) for b in model.hidden()]
    population = _numpy_population(model, data.x_train.numpy(), 16)
    # Forgot eval(): each of the 3 test batches (17, 17, 16 examples) uses its own statistics.
    train_mode = np.concatenate(
        [_numpy_logits(model, part, _batch_stats(model, part)) for part in np.array_split(x, 3)]
    )
    for name, logits in (
        ("acc", _numpy_logits(model, x, running)),
        ("acc_population", _numpy_logits(model, x, population)),
        ("acc_train_mode", train_mode),
    ):
        assert float(metrics[name]) == pytest.approx(float((logits.argmax(1) == y).mean()))
    assert not np.allclose(train_mode, _numpy_logits(model, x, running)), "modes must differ"


def _batch_stats(model: MLP, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each layer's biased batch statistics in the training network (what train mode uses)."""
    stats, h = [], x
    for weight, gamma, beta in _params(model):
        pre = h @ weight.T
        stats.append((pre.mean(0), pre.var(0)))
        h = _sigmoid(gamma * (pre - pre.mean(0)) / np.sqrt(pre.var(0) + EPS) + beta)
    return stats


def test_variants_without_running_statistics_report_eval_mode_only(digits: Dataset) -> None:
    config = RunConfig(variants=("ln", "plain"), depth=1, width=8)
    for model in build_variants(config, 64, 10, torch.device("cpu")).values():
        metrics = evaluate(model, digits, 32, torch.nn.CrossEntropyLoss())
        assert set(metrics) == {"loss", "acc"}


def test_cumulative_average_matches_pytorchs_own_cumulative_mode() -> None:
    # With momentum None, PyTorch's running statistics ARE the cumulative average of the
    # batch means and unbiased variances: the tracked averages must equal them, and the
    # test accuracy scored with them must equal the eval-mode accuracy.
    config = RunConfig(
        variants=("plain", "bn"), depth=2, width=12, batch_size=16, steps=9,
        probe_every=3, test_every=4, bn_momentum=None, compare_cumulative=True,
    )  # fmt: skip
    trainer = Trainer(config)
    frames = []
    while not trainer.done:
        frames += [m for m in trainer.train_step() if m["type"] == "frame"]
    averages = trainer.cumulative["bn"].statistics()
    assert averages is not None and "plain" not in trainer.cumulative
    for norm, (mean, var) in zip(running_stat_norms(trainer.models["bn"]), averages, strict=True):
        torch.testing.assert_close(mean, norm.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(var, norm.running_var, rtol=1e-5, atol=1e-6)
    tested = [f["variants"]["bn"]["test"] for f in frames if "test" in f["variants"]["bn"]]
    assert [t["acc_cumulative"] for t in tested[1:]] == [t["acc"] for t in tested[1:]]
    assert "acc_cumulative" not in tested[0]  # no batch seen yet at step 0
    assert all("acc_cumulative" not in f["variants"]["plain"].get("test", {}) for f in frames)


def test_cumulative_average_is_off_by_default_and_adds_no_hook() -> None:
    trainer = Trainer(RunConfig(depth=1, width=8, steps=3, probe_every=1))
    assert trainer.cumulative == {}
    trainer.train_step()
    for model in trainer.models.values():
        assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_batches_side_by_side_give_what_one_forward_per_batch_gives(
    arch: str, digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch's BatchNorm takes k batches in one forward (inference.batches_side_by_side); the
    # loop of one forward per batch is the reference, the path every other norm takes.
    config = RunConfig(arch=arch, variants=("bn",), depth=2, width=6, seed=1)
    shape = (1, 8, 8) if arch == "cnn" else None  # digits as 8x8 images
    model = build_variants(config, 64, 10, torch.device("cpu"), shape)["bn"].double()
    for block in model.hidden():  # trained-looking γ and β, not the defaults
        assert block.norm is not None
        torch.nn.init.uniform_(block.norm.weight, 0.5, 1.5)
        torch.nn.init.uniform_(block.norm.bias, -0.5, 0.5)
    x_train, x_test = digits.x_train[:200].double(), digits.x_test[:96].double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        fast = population_statistics(model, x_train, 16), train_mode_logits(model, x_test, 16)
        monkeypatch.setattr(inference, "SIDE_BY_SIDE", ())
        slow = population_statistics(model, x_train, 16), train_mode_logits(model, x_test, 16)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not any("forward" in vars(block.norm) for block in model.hidden())  # put back
    for (mean, var), (want_mean, want_var) in zip(fast[0], slow[0], strict=True):
        torch.testing.assert_close(mean, want_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(var, want_var, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-12, atol=1e-12)
    assert fast[1].shape == (96, 10)
