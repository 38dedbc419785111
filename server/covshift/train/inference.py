"""Test-time statistics: accuracy with running, batch ("forgot eval()") and population statistics.

A normalizer with running statistics behaves differently in training and at
inference. On every test step each such variant is scored three ways: eval mode
(running averages: what inference should do), train mode on test batches (the
classic bug of forgetting `model.eval()`: each test batch normalised by its own
statistics), and eval mode with population statistics recomputed over the
training set (Ioffe & Szegedy 2015, Algorithm 2). None of them changes training:
every buffer and noise generator is put back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .data import Dataset
from .hooks import hooked
from .models import Network
from .norms import batch_moments, has_running_stats, restoring_state

# Algorithm 2 averages over "multiple training mini-batches"; at most this many bound the
# cost of a test step (all of digits at batch size 60; 6,000 MNIST examples).
POPULATION_BATCHES = 100
# Eval-mode scoring takes the test set in chunks of this many examples: per example it is
# the same (running statistics), and a CNN's maps of all 10,000 MNIST test images at once
# would need gigabytes. Above digits' 360, so its MLP runs still score in one pass.
EVAL_CHUNK = 512


def running_stat_norms(model: Network) -> list[_BatchNorm]:
    """The model's normalizers with running statistics (any BatchNorm), in forward order."""
    return [
        b.norm
        for b in model.hidden()
        if isinstance(b.norm, _BatchNorm) and has_running_stats(b.norm)
    ]


@torch.no_grad()
def evaluate(
    model: Network,
    data: Dataset,
    batch_size: int,
    loss_fn: nn.Module,
    cumulative: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """loss and acc in eval mode; with running statistics also acc_train_mode and
    acc_population, and acc_cumulative when cumulative averages are given. Tensors, so
    the frame converts them with everything else."""
    logits = _eval_logits(model, data.x_test)
    metrics = {"loss": loss_fn(logits, data.y_test), "acc": accuracy(logits, data.y_test)}
    if running_stat_norms(model):
        # Batch-statistic normalizers cannot take one example; score with at least two.
        size = max(batch_size, 2)
        metrics["acc_train_mode"] = accuracy(
            train_mode_logits(model, data.x_test, size), data.y_test
        )
        population = population_statistics(model, data.x_train, size)
        metrics["acc_population"] = accuracy(
            _eval_logits(model, data.x_test, population), data.y_test
        )
        if cumulative is not None:
            metrics["acc_cumulative"] = accuracy(
                _eval_logits(model, data.x_test, cumulative), data.y_test
            )
    return metrics


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == y).float().mean()


def test_batches(x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """floor(n / B) consecutive batches of near-equal size: the remainder is shared out, so
    every test example is scored and no batch is smaller than B."""
    return torch.tensor_split(x, max(1, x.shape[0] // batch_size))


def train_mode_logits(model: Network, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits with the model left in train mode: each batch normalised by its own statistics."""
    batches = test_batches(x, batch_size)
    with restoring_state(model):
        model.train()
        size = batches[0].shape[0]
        if all(b.shape[0] == size for b in batches) and side_by_side(model):
            with batches_side_by_side(running_stat_norms(model), size):
                logits: torch.Tensor = model(x)
                return logits
        return torch.cat([model(chunk) for chunk in batches])


def population_statistics(
    model: Network, x_train: torch.Tensor, batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per running-statistics normalizer: E[x] = mean of the batch means and
    Var[x] = m/(m-1) · mean of the biased batch variances (= mean of unbiased ones; m counts
    N x H x W values per channel of a conv map, as BatchNorm2d's own correction), over
    the first (at most POPULATION_BATCHES) consecutive training mini-batches of m examples,
    passed through the training network (train mode; ghost BN: over its ghost batches).
    Algorithm 2 of Ioffe & Szegedy (2015)."""
    norms = running_stat_norms(model)
    means: list[list[torch.Tensor]] = [[] for _ in norms]
    variances: list[list[torch.Tensor]] = [[] for _ in norms]
    # Whole mini-batches of m, as training takes them; the remainder is left out.
    used = min(x_train.shape[0] // batch_size, POPULATION_BATCHES) * batch_size
    if side_by_side(model):
        with restoring_state(model), norm_inputs(norms) as seen:
            model.train()
            with batches_side_by_side(norms, batch_size):
                model(x_train[:used])
        return [_moments_per_batch(inputs, batch_size) for inputs in seen]
    with restoring_state(model), norm_inputs(norms) as seen:
        model.train()
        for chunk in torch.split(x_train[:used], batch_size):
            seen.clear()
            model(chunk)
            for norm, inputs, mean, var in zip(norms, seen, means, variances, strict=True):
                batch_mean, batch_var = batch_moments(norm, inputs)
                mean.append(batch_mean)
                var.append(batch_var)
    return [
        (torch.cat(mean).mean(dim=0), torch.cat(var).mean(dim=0))
        for mean, var in zip(means, variances, strict=True)
    ]


# torch's own BatchNorm layers: their training forward is batch_norm over the batch and
# nothing else, so k equal batches can pass side by side in one forward.
SIDE_BY_SIDE = (nn.BatchNorm1d, nn.BatchNorm2d)


def side_by_side(model: Network) -> bool:
    """Whether every running-statistics normalizer of the model is torch's own BatchNorm."""
    return all(type(norm) in SIDE_BY_SIDE for norm in running_stat_norms(model))


@contextmanager
def batches_side_by_side(norms: list[_BatchNorm], batch_size: int) -> Iterator[None]:
    """Inside the block, a training forward over k consecutive batches of `batch_size`
    normalises each batch by its own statistics, as k forwards would, in one pass: the
    (k·m, C, …) input is taken as (m, k·C, …), each batch's channels columns of their own.
    Only for torch's own BatchNorm (SIDE_BY_SIDE); every norm's forward is put back after."""

    def forward_of(norm: _BatchNorm) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            k, channels, rest = x.shape[0] // batch_size, x.shape[1], x.shape[2:]
            columns = x.reshape(k, batch_size, channels, *rest).transpose(0, 1)
            weight = None if norm.weight is None else norm.weight.repeat(k)
            bias = None if norm.bias is None else norm.bias.repeat(k)
            out = F.batch_norm(
                columns.reshape(batch_size, k * channels, *rest),
                None, None, weight, bias, training=True, eps=norm.eps,
            )  # fmt: skip
            return out.reshape(batch_size, k, channels, *rest).transpose(0, 1).reshape(x.shape)

        return forward

    for norm in norms:
        norm.forward = forward_of(norm)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for norm in norms:
            del norm.forward


def _moments_per_batch(x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """E and Var of Algorithm 2 from k batches side by side: the mean of the batch means and
    of the unbiased batch variances, over m (x H x W) values per channel."""
    batches = x.reshape(x.shape[0] // batch_size, batch_size, *x.shape[1:])
    over = (1, *range(3, batches.dim()))  # a batch's examples and positions
    mean = batches.mean(dim=over, keepdim=True)
    # Two-pass, by hand: torch's var over a middle axis costs ~10x this on a CPU.
    squares = (batches - mean).square().sum(dim=over)
    values = batches.numel() // (batches.shape[0] * batches.shape[2])
    return mean.mean(dim=0).reshape(-1), (squares / (values - 1)).mean(dim=0)


@contextmanager
def norm_inputs(norms: list[_BatchNorm]) -> Iterator[list[torch.Tensor]]:
    """Collect each norm's input of the forward passes run inside the block, in order."""
    seen: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append(inputs[0].detach())

    with hooked((norm, keep) for norm in norms):
        yield seen


def _eval_logits(
    model: Network,
    x: torch.Tensor,
    statistics: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Logits in eval mode, with the running statistics or, temporarily, the given ones."""
    with restoring_state(model):
        if statistics is not None:
            for norm, (mean, var) in zip(running_stat_norms(model), statistics, strict=True):
                assert norm.running_mean is not None and norm.running_var is not None
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
        model.eval()
        logits = torch.cat([model(chunk) for chunk in torch.split(x, EVAL_CHUNK)])
        model.train()
    return logits
