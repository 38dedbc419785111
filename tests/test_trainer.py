"""The lockstep trainer: same batches for every variant, reproducible frames, recorded
controls, batch size 1 explained, divergence flagged with valid JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from covshift.config import RunConfig
from covshift.errors import ConfigError
from covshift.train.data import Dataset
from covshift.train.trainer import Trainer
from covshift.variants import VARIANTS
from covshift.wire import SCHEMA_VERSION


def _run(trainer: Trainer, steps: int | None = None) -> list[dict]:
    messages = []
    for _ in range(steps if steps is not None else trainer.config.steps - trainer.step):
        messages += trainer.train_step()
    return messages


def test_every_variant_sees_the_same_batches_in_the_same_order(small_config: RunConfig) -> None:
    config = small_config.model_copy(update={"variants": ("plain", "bn", "bn_after"), "steps": 6})
    trainer = Trainer(config)
    seen: dict[str, list[torch.Tensor]] = {v: [] for v in config.variants}
    handles = [
        model.hidden()[0].linear.register_forward_pre_hook(
            # test-set and population passes run without autograd; keep the training batches
            lambda m, inputs, v=variant: (
                seen[v].append(inputs[0].clone()) if torch.is_grad_enabled() else None
            )
        )
        for variant, model in trainer.models.items()
    ]
    _run(trainer)
    for handle in handles:
        handle.remove()
    assert len(seen["plain"]) == 6
    for variant in ("bn", "bn_after"):
        assert all(torch.equal(a, b) for a, b in zip(seen["plain"], seen[variant], strict=True))
    assert not torch.equal(seen["plain"][0], seen["plain"][1])


def test_same_seed_gives_identical_frames_and_another_seed_does_not(
    small_config: RunConfig,
) -> None:
    first = json.dumps(_run(Trainer(small_config)))
    again = json.dumps(_run(Trainer(small_config)))
    other = json.dumps(_run(Trainer(small_config.model_copy(update={"seed": 1}))))
    assert first == again
    assert first != other


def test_no_hook_survives_a_run(small_config: RunConfig) -> None:
    trainer = Trainer(small_config)
    _run(trainer, 5)
    for model in trainer.models.values():
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_frames_are_versioned_json_and_describe_every_layer(small_config: RunConfig) -> None:
    trainer = Trainer(small_config)
    hello = trainer.hello()
    assert hello["type"] == "hello" and hello["v"] == SCHEMA_VERSION
    assert hello["edges"] == []  # each variant has its own: variant_edges
    for variant in small_config.variants:
        edges = hello["variant_edges"][variant]
        assert len(edges) == small_config.depth
        assert len(edges[0]["act_input"]) == small_config.bins + 1
    frames = [m for m in _run(trainer) if m["type"] == "frame"]
    assert [f["step"] for f in frames] == list(range(small_config.steps))
    for frame in frames:
        json.dumps(frame, allow_nan=False)
    frame = frames[-1]
    bn = frame["variants"]["bn"]
    assert set(bn["layers"][0]["taps"]) == {
        "linear_out",
        "norm_xhat",
        "norm_out",
        "act_input",
        "act_output",
    }
    assert set(frame["variants"]["plain"]["layers"][0]["taps"]) == {
        "linear_out",
        "act_input",
        "act_output",
    }
    assert len(bn["layers"][0]["bn"]["gamma"]) == small_config.width
    assert 0 <= bn["layers"][0]["saturated"] <= 1
    assert bn["layers"][0]["drift"]["w1"] >= 0 and bn["layers"][0]["grad_norm"] > 0
    assert frames[0]["variants"]["bn"]["layers"][0]["drift"] is None
    assert "test" in frame["variants"]["plain"]  # last step always tests


def test_test_metrics_are_eval_mode_on_the_held_out_split(small_config: RunConfig) -> None:
    trainer = Trainer(small_config.model_copy(update={"test_every": 7}))
    _run(trainer, 7)  # 7 updates done; the frame of step 7 tests before update 8
    expected = {}
    for variant, model in trainer.models.items():
        model.eval()  # running statistics, as inference uses them
        with torch.no_grad():
            logits = model(trainer.data.x_test)
        model.train()
        expected[variant] = (
            float(torch.nn.functional.cross_entropy(logits, trainer.data.y_test)),
            float((logits.argmax(1) == trainer.data.y_test).double().mean()),
        )
    frame = next(m for m in trainer.train_step() if m["type"] == "frame")
    for variant, (loss, acc) in expected.items():
        assert frame["variants"][variant]["test"]["loss"] == pytest.approx(loss, rel=1e-6)
        assert frame["variants"][variant]["test"]["acc"] == pytest.approx(acc, abs=1e-6)
    assert (
        "test"
        not in next(m for m in trainer.train_step() if m["type"] == "frame")["variants"]["bn"]
    )


def test_learning_rate_and_batch_size_changes_are_events_at_their_step(
    small_config: RunConfig,
) -> None:
    trainer = Trainer(small_config)
    _run(trainer, 3)
    # Each change returns its event once; the step's messages do not repeat it.
    events = trainer.set_lr(0.05) + trainer.set_batch_size(8)
    assert [(e["kind"], e["step"], e["value"], e["previous"]) for e in events] == [
        ("lr", 3, 0.05, small_config.lr),
        ("batch_size", 3, 8, small_config.batch_size),
    ]
    messages = _run(trainer, 2)
    assert [m for m in messages if m["type"] == "event"] == []
    frames = [m for m in messages if m["type"] == "frame"]
    assert frames[0]["lr"] == 0.05 and frames[0]["batch_size"] == 8
    assert all(g["lr"] == 0.05 for opt in trainer.optimizers.values() for g in opt.param_groups)
    assert (
        sum(frames[0]["variants"]["plain"]["layers"][0]["taps"]["act_output"]["counts"]) == 8 * 16
    )


def test_a_control_that_changes_nothing_records_nothing(small_config: RunConfig) -> None:
    trainer = Trainer(small_config)
    assert trainer.set_lr(small_config.lr) == []
    assert trainer.set_batch_size(small_config.batch_size) == []
    assert trainer.set_bn_momentum(small_config.bn_momentum) == []
    assert [e["kind"] for e in trainer.set_lr(small_config.lr / 2)] == ["lr"]
    assert trainer.set_lr(small_config.lr / 2) == []


def test_bn_momentum_change_reaches_every_bn_layer(small_config: RunConfig) -> None:
    trainer = Trainer(small_config)
    trainer.set_bn_momentum(None)
    assert all(b.norm.momentum is None for b in trainer.models["bn"].hidden() if b.norm)


def test_batch_sizes_the_data_cannot_give_are_refused_and_change_nothing(
    small_config: RunConfig,
) -> None:
    # The config's bounds are checked where a change enters (test_config); what depends on
    # the data is the trainer's to refuse: more examples than it has, or batch size 1 when
    # every variant needs batch statistics.
    trainer = Trainer(small_config)
    with pytest.raises(ConfigError, match="^batch_size: 100000 is more than the"):
        trainer.set_batch_size(100_000)
    bn_only = Trainer(small_config.model_copy(update={"variants": ("bn",)}))
    with pytest.raises(ConfigError, match="^batch_size: BatchNorm cannot train on batch size 1"):
        bn_only.set_batch_size(1)
    assert (trainer.lr, trainer.batch_size) == (small_config.lr, small_config.batch_size)
    assert _run(trainer, 1)[0]["type"] == "frame"  # no event was recorded


def test_batch_size_one_skips_bn_with_a_reason_and_trains_the_rest(small_config: RunConfig) -> None:
    trainer = Trainer(small_config.model_copy(update={"batch_size": 1}))
    messages = _run(trainer, 3)
    skipped = [m for m in messages if m["type"] == "event" and m["kind"] == "skipped"]
    assert skipped[0]["variants"] == ["bn"] and "variance" in skipped[0]["reason"]
    frame = [m for m in messages if m["type"] == "frame"][-1]
    assert (
        frame["variants"]["bn"]["status"] == "skipped" and "layers" not in frame["variants"]["bn"]
    )
    assert frame["variants"]["plain"]["status"] == "training"
    # On a test step the skipped variant is not scored: "test" is null, never its frozen weights.
    first = next(m for m in messages if m["type"] == "frame")
    assert first["variants"]["bn"]["test"] is None
    assert first["variants"]["plain"]["test"]["acc"] is not None
    with pytest.raises(ConfigError, match="^batch_size: BatchNorm cannot train on batch size 1"):
        Trainer(small_config.model_copy(update={"batch_size": 1, "variants": ("bn",)}))


def test_batch_larger_than_the_training_set_is_refused(small_config: RunConfig) -> None:
    with pytest.raises(ConfigError, match="^batch_size: 4000 is more than the 1437 training"):
        Trainer(small_config.model_copy(update={"batch_size": 4000}))


def test_a_diverging_variant_is_flagged_at_its_step_and_json_stays_valid() -> None:
    config = RunConfig(
        dataset="digits",
        activation="relu",
        init="default",
        lr=10,
        depth=2,
        width=32,
        steps=60,
        probe_every=5,
        variants=("plain", "bn"),
    )
    trainer = Trainer(config)
    messages = _run(trainer)
    text = "[" + ",".join(json.dumps(m, allow_nan=False) for m in messages) + "]"
    diverged = [m for m in messages if m["type"] == "event" and m["kind"] == "diverged"]
    assert [e["variant"] for e in diverged] == ["plain"]
    step = diverged[0]["step"]
    frames = [m for m in messages if m["type"] == "frame"]
    flagged = [f for f in frames if f["step"] >= step and "nonfinite" in f]
    assert flagged, "a frame with the non-finite loss carries explicit flags"
    assert any(v in ("nan", "inf") for v in flagged[0]["nonfinite"].values())
    assert frames[-1]["variants"]["plain"]["status"] == "diverged"
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert math.isfinite(frames[-1]["variants"]["bn"]["loss"])


def test_cuda_request_without_a_device_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; this checks the message when there is none")
    with pytest.raises(ConfigError, match="^device: 'cuda'"):
        Trainer(RunConfig(device="cuda"))


ALL_VARIANTS = tuple(VARIANTS)


def test_every_variant_trains_in_lockstep_and_reports_its_normalizer(digits: Dataset) -> None:
    config = RunConfig(
        variants=ALL_VARIANTS, depth=2, width=8, batch_size=24, steps=3, probe_every=1
    )
    frames = [m for m in _run(Trainer(config, digits)) if m["type"] == "frame"]
    last = frames[-1]["variants"]
    for variant in ALL_VARIANTS:
        assert last[variant]["status"] == "training" and math.isfinite(last[variant]["loss"])
    assert "norm_xhat" not in last["wn"]["layers"][0]["taps"]
    assert len(last["wn"]["layers"][0]["weight_norm"]["g"]) == 8
    for variant in ("ln", "gn", "rms"):
        layer = last[variant]["layers"][0]
        assert layer["bn"] is None and len(layer["affine"]["gamma"]) == 8
        assert "norm_xhat" in layer["taps"]
    assert last["rms"]["layers"][0]["affine"]["beta"] is None  # RMSNorm has no shift
    brn = last["brn"]["layers"][1]["bn"]
    assert len(brn["r"]) == len(brn["d"]) == 8 and brn["r_max"] >= 1 and brn["d_max"] >= 0
    for variant in ("bn", "brn", "noisy_bn", "ghost_bn"):
        assert set(last[variant]["test"]) == {"loss", "acc", "acc_train_mode", "acc_population"}
    assert set(last["ln"]["test"]) == {"loss", "acc"}


def test_batch_size_one_trains_layer_group_and_weight_norm(digits: Dataset) -> None:
    config = RunConfig(variants=ALL_VARIANTS, depth=1, width=8, batch_size=1, steps=3)
    messages = _run(Trainer(config, digits))
    skipped = next(m for m in messages if m["type"] == "event" and m["kind"] == "skipped")
    assert skipped["variants"] == ["bn", "bn_after", "brn", "noisy_bn", "ghost_bn"]
    frame = [m for m in messages if m["type"] == "frame"][-1]["variants"]
    assert [v for v in ALL_VARIANTS if frame[v]["status"] == "training"] == [
        "plain",
        "ln",
        "gn",
        "rms",
        "wn",
    ]
    assert all(math.isfinite(frame[v]["loss"]) for v in ("ln", "gn", "wn"))


def test_ghost_bn_streams_the_statistics_its_running_averages_follow(digits: Dataset) -> None:
    # Ghost BN's running_var is an EMA of the ghost batches' mean unbiased variance, not of
    # the whole batch's: replaying the EMA on ghost_var reproduces it exactly, on batch_var not.
    config = RunConfig(
        variants=("ghost_bn",),
        depth=1,
        width=6,
        batch_size=40,
        ghost_batch_size=8,
        steps=6,
        probe_every=1,
        bn_momentum=0.2,
    )
    trainer = Trainer(config, digits)
    start = trainer.models["ghost_bn"].hidden()[0].norm.running_var.clone().double()
    frames = [m for m in _run(trainer) if m["type"] == "frame"]
    layers = [f["variants"]["ghost_bn"]["layers"][0]["bn"] for f in frames]
    ema = start
    for layer in layers:
        ema = 0.8 * ema + 0.2 * torch.tensor(layer["ghost_var"], dtype=torch.float64)
        torch.testing.assert_close(ema, torch.tensor(layer["running_var"], dtype=torch.float64))
    whole = start
    for layer in layers:
        whole = 0.8 * whole + 0.2 * torch.tensor(layer["batch_var"], dtype=torch.float64)
    assert not torch.allclose(whole, torch.tensor(layers[-1]["running_var"], dtype=torch.float64))


def test_each_variant_gets_its_own_bins_so_one_variants_outliers_flatten_no_other() -> None:
    # BN's first-batch activation input reaches a few standard deviations; plain's, with
    # std-0.1 Gaussian weights, is an order of magnitude narrower: shared bins would put
    # plain's whole distribution into two or three bins.
    config = RunConfig(depth=2, width=32, steps=2, probe_every=1, ics_every=0)
    trainer = Trainer(config)
    edges = trainer.hello()["variant_edges"]
    reach = {v: edges[v][1]["act_input"][-1] for v in config.variants}
    assert reach["bn"] >= 4 * reach["plain"], reach
    # The frame's counts are over the variant's own edges: all of plain's batch inside them.
    frame = next(m for m in trainer.train_step() if m["type"] == "frame")
    tap = frame["variants"]["plain"]["layers"][1]["taps"]["act_input"]
    assert tap["underflow"] == tap["overflow"] == 0
    assert sum(1 for c in tap["counts"] if c > 0) > 10


def test_a_frames_gradient_norms_are_each_hidden_layers_weight_gradient_norm(
    small_config: RunConfig,
) -> None:
    """Against NumPy's float64 norm of the gradients the step left (WeightNorm: g and v
    together), read after the step, since the next step's zero_grad clears them."""
    config = small_config.model_copy(update={"variants": ["plain", "bn", "wn"]})
    trainer = Trainer(config)
    (frame,) = [m for m in trainer.train_step() if m["type"] == "frame"]
    for variant, model in trainer.models.items():
        expected = []
        for block in model.hidden():
            grads = [p.grad for name, p in block.linear.named_parameters() if name != "bias"]
            flat = np.concatenate([g.double().numpy().ravel() for g in grads])
            expected.append(np.linalg.norm(flat))
        got = [layer["grad_norm"] for layer in frame["variants"][variant]["layers"]]
        assert len(grads) == (2 if variant == "wn" else 1)
        assert got == pytest.approx(expected, rel=1e-6)
