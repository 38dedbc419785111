"""Catch BatchNorm run in the wrong mode: a forward-hook observer over a live model's BN modules.

Two mistakes cannot be seen in a stored run, only in the live model as it is called:

- train mode while autograd is off (typically evaluation under `torch.no_grad()` without
  `model.eval()`): every evaluation batch is normalized with its own statistics and, with
  running statistics tracked, moves running_mean and running_var;
- eval mode while autograd is on and the module's parameters require grad (typically
  `model.eval()` left on after an evaluation, then training resumed): BN normalizes with
  stale running statistics and never updates them. Fine-tuning with BN deliberately frozen
  sets requires_grad False on γ and β, and is not counted.

The observer only counts forward passes; `findings()` turns the counts into findings.
Evaluation code that runs train mode under no_grad on purpose (covshift's own
acc_train_mode score, which restores the buffers afterwards) is counted too: observe the
user's loop, not such a measurement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from covshift.findings import Finding

from .hooks import Hook, hooked


@dataclass
class ModeCounts:
    """Forward passes of one BN module, by what they did."""

    name: str  # the module's name in model.named_modules()
    tracks_running_stats: bool
    forwards: int = 0
    train_without_grad: int = 0  # train mode, autograd off: evaluation with batch statistics
    eval_with_grad: int = 0  # eval mode, autograd on, γ/β trainable: training on stale stats


class BNModeObserver:
    """Counts BN forwards run in the wrong mode while `observe()` is active.

    with observer.observe():
        train_and_evaluate(model)
    observer.findings()
    """

    def __init__(self, model: nn.Module, variant: str = "model") -> None:
        self.variant = variant  # names the findings, as a run's variant would
        self.modules: list[tuple[_BatchNorm, ModeCounts]] = [
            (module, ModeCounts(name or type(module).__name__, module.track_running_stats))
            for name, module in model.named_modules()
            if isinstance(module, _BatchNorm)
        ]

    @contextmanager
    def observe(self) -> Iterator[BNModeObserver]:
        """Count the forward passes run inside the block; the hooks are always removed."""
        hooks: list[tuple[nn.Module, Hook]] = [
            (module, self._counter(counts)) for module, counts in self.modules
        ]
        with hooked(hooks):
            yield self

    @staticmethod
    def _counter(counts: ModeCounts) -> Hook:
        def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            counts.forwards += 1
            # Autograd's state is global and unchanged during the forward, so a post-hook
            # sees what the forward saw.
            grad = torch.is_grad_enabled()
            if module.training and not grad:
                counts.train_without_grad += 1
            elif not module.training and grad and _trainable(module):
                counts.eval_with_grad += 1

        return count

    def reset(self) -> None:
        for _, counts in self.modules:
            counts.forwards = counts.train_without_grad = counts.eval_with_grad = 0

    def counts(self) -> list[ModeCounts]:
        return [counts for _, counts in self.modules]

    def findings(self) -> list[Finding]:
        """One finding per module and mistake seen; none when every forward was in its mode.
        `layer` is the module's index among the model's BN modules."""
        found = []
        for index, (_, counts) in enumerate(self.modules):
            if counts.train_without_grad:
                found.append(self._train_without_grad(index, counts))
            if counts.eval_with_grad:
                found.append(self._eval_with_grad(index, counts))
        return found

    def _train_without_grad(self, index: int, counts: ModeCounts) -> Finding:
        effect = (
            "the evaluation batches moved running_mean/var"
            if counts.tracks_running_stats
            else "each evaluation batch was normalized with its own statistics"
        )
        return Finding(
            variant=self.variant,
            layer=index,
            code="bn_train_mode_in_eval",
            severity="warn",
            title=f"BN left in train mode during evaluation ({counts.name})",
            evidence=(
                f"{counts.train_without_grad} of {counts.forwards} forward passes of "
                f"{counts.name} ran in train mode with autograd off: {effect}."
            ),
            fix=(
                "Call model.eval() before evaluating (torch.no_grad() does not switch BN to "
                "its running statistics) and model.train() before training again."
            ),
            numbers={
                "module": counts.name,
                "forwards": counts.forwards,
                "train_without_grad": counts.train_without_grad,
            },
        )

    def _eval_with_grad(self, index: int, counts: ModeCounts) -> Finding:
        return Finding(
            variant=self.variant,
            layer=index,
            code="bn_eval_mode_in_training",
            severity="warn",
            title=f"BN frozen in eval mode while training ({counts.name})",
            evidence=(
                f"{counts.eval_with_grad} of {counts.forwards} forward passes of {counts.name} "
                "ran in eval mode with autograd on and γ/β requiring grad: it normalizes with "
                "stale running statistics and never updates them."
            ),
            fix=(
                "Call model.train() after evaluating; to freeze BN on purpose, also set "
                "requires_grad_(False) on its parameters."
            ),
            numbers={
                "module": counts.name,
                "forwards": counts.forwards,
                "eval_with_grad": counts.eval_with_grad,
            },
        )


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters(recurse=False))
