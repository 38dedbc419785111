"""Variants differ only in their normalizer: same initial Linear weights, expected layer order."""

from __future__ import annotations

import pytest
import torch
from covshift.config import RunConfig
from covshift.train.models import build_variants
from covshift.variants import BATCH_STAT_VARIANTS, VARIANTS
from torch import nn


@pytest.mark.parametrize("init", ["gaussian", "default"])
def test_all_variants_start_from_identical_linear_weights(init: str) -> None:
    config = RunConfig(variants=("plain", "bn", "bn_after"), depth=3, width=20, init=init, seed=7)
    models = build_variants(config, 64, 10, torch.device("cpu"))
    reference = models["plain"].linears()
    for model in models.values():
        for ref, linear in zip(reference, model.linears(), strict=True):
            assert torch.equal(ref.weight, linear.weight)
    # BN before the activation replaces the Linear bias by beta (Ioffe & Szegedy, Sec. 3.2)
    assert all(block.linear.bias is None for block in models["bn"].hidden())
    assert all(block.linear.bias is not None for block in models["bn_after"].hidden())


def test_gaussian_init_has_the_asked_std_and_the_seed_decides() -> None:
    config = RunConfig(width=400, init="gaussian", init_std=0.05, seed=3)
    weight = build_variants(config, 64, 10, torch.device("cpu"))["plain"].linears()[1].weight
    assert float(weight.detach().std()) == pytest.approx(0.05, rel=0.02)
    other = build_variants(config.model_copy(update={"seed": 4}), 64, 10, torch.device("cpu"))
    assert not torch.equal(weight, other["plain"].linears()[1].weight)


def test_building_models_leaves_the_global_random_stream_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_variants(RunConfig(), 64, 10, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)


def test_forward_order_puts_bn_before_or_after_the_activation() -> None:
    config = RunConfig(variants=("bn", "bn_after"), depth=1, width=4, activation="relu")
    models = build_variants(config, 3, 2, torch.device("cpu"))
    order: dict[str, list[str]] = {}
    for name, model in models.items():
        seen: list[str] = []
        block = model.hidden()[0]
        handles = [
            module.register_forward_hook(lambda m, i, o, tag=tag, seen=seen: seen.append(tag))
            for tag, module in (("linear", block.linear), ("norm", block.norm), ("act", block.act))
            if isinstance(module, nn.Module)
        ]
        model(torch.randn(5, 3))
        for handle in handles:
            handle.remove()
        order[name] = seen
    assert order == {"bn": ["linear", "norm", "act"], "bn_after": ["linear", "act", "norm"]}


def test_every_registered_variant_builds_and_only_batch_normalizers_drop_the_bias() -> None:
    # A batch normalizer before the activation subtracts the batch mean, cancelling any
    # Linear bias; a per-example one (LayerNorm, GroupNorm, RMSNorm) does not, so it keeps it.
    config = RunConfig(variants=tuple(VARIANTS), depth=2, width=8, gn_groups=2)
    models = build_variants(config, 4, 3, torch.device("cpu"))
    for name, model in models.items():
        biased = [block.linear.bias is not None for block in model.hidden()]
        drops = name in BATCH_STAT_VARIANTS and VARIANTS[name].placement == "before"
        assert biased == [not drops] * 2, name
        assert model(torch.randn(6, 4)).shape == (6, 3)
    assert {"bn", "brn", "noisy_bn", "ghost_bn"} <= {
        n for n, m in models.items() if m.hidden()[0].linear.bias is None
    }
    assert all(models[n].hidden()[0].linear.bias is not None for n in ("ln", "gn", "rms"))


def test_the_config_bounds_follow_the_registry() -> None:
    assert RunConfig(variants=tuple(VARIANTS)).variants == tuple(VARIANTS)
    schema = RunConfig.model_json_schema()["properties"]["variants"]
    assert schema["maxItems"] == len(VARIANTS)
    assert schema["items"]["enum"] == list(VARIANTS)
