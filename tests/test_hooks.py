"""Hooks as a context manager: every user (probes, population statistics, cumulative averages)
leaves the model without a hook, also when the forward pass raises."""

from __future__ import annotations

import pytest
import torch
from covshift.config import RunConfig
from covshift.train.cumulative import CumulativeAverages
from covshift.train.hooks import hooked
from covshift.train.inference import norm_inputs, running_stat_norms
from covshift.train.models import MLP, build_variants
from covshift.train.probes import capture
from torch import nn


def hook_count(model: nn.Module) -> int:
    return sum(len(module._forward_hooks) for module in model.modules())


@pytest.fixture
def model() -> MLP:
    config = RunConfig(variants=("brn",), depth=2, width=6)
    return build_variants(config, 4, 3, torch.device("cpu"))["brn"]


def test_hooked_observes_and_removes_its_hooks_even_when_the_forward_raises() -> None:
    layer = nn.Linear(3, 2)
    seen: list[torch.Size] = []
    with hooked([(layer, lambda m, i, o: seen.append(o.shape))]):
        assert hook_count(layer) == 1
        layer(torch.randn(5, 3))
    assert seen == [torch.Size([5, 2])] and hook_count(layer) == 0
    with pytest.raises(RuntimeError), hooked([(layer, lambda m, i, o: None)]):
        layer(torch.randn(5, 4))  # wrong width: the forward raises inside the block
    assert hook_count(layer) == 0


def test_every_user_of_hooks_leaves_none_behind(model: MLP) -> None:
    x = torch.randn(8, 4)
    with capture(model) as layers:
        assert hook_count(model) > 0
        model(x)
    assert layers[0]["linear_out"].shape == (8, 6)
    with norm_inputs(running_stat_norms(model)) as inputs:
        model(x)
    assert len(inputs) == 2
    averages = CumulativeAverages(model)
    with averages.tracking():
        model(x)
    assert averages.batches == 1
    assert hook_count(model) == 0


def test_a_failed_capture_removes_its_hooks(model: MLP) -> None:
    with pytest.raises(RuntimeError), capture(model):
        model(torch.randn(8, 5))
    assert hook_count(model) == 0
