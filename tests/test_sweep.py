"""Sweeps: deterministic under a seed, divergence marked (never raised), batch-statistic noise
against a NumPy recomputation over the same batches, fields derived from the swept value by
hand, and the spread over seeds against the single-seed runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from covshift.cli import main
from covshift.config import RunConfig
from covshift.errors import ConfigError
from covshift.headless import run_preset
from covshift.presets import PRESETS, Scale, point_config, preset_config
from covshift.reports.sweep import render_sweep_report
from covshift.train.data import Dataset
from covshift.train.models import build_variants
from covshift.train.sweep import (
    NOISE_BATCHES,
    batch_statistics_noise,
    over_seeds,
    run_sweep,
)
from pydantic import ValidationError


def _base(**values: object) -> RunConfig:
    fields = {"variants": ("plain", "bn"), "depth": 1, "width": 8, "steps": 10, "ics_every": 0}
    return RunConfig.model_validate({**fields, **values})


def _without_timing(result: dict) -> str:
    return json.dumps({k: v for k, v in result.items() if k != "seconds"})


def test_a_sweep_is_deterministic_under_its_seed(digits: Dataset) -> None:
    first = run_sweep(_base(), "batch_size", (4, 16), dataset=digits)
    again = run_sweep(_base(), "batch_size", (4, 16), dataset=digits)
    other = run_sweep(_base(seed=1), "batch_size", (4, 16), dataset=digits)
    assert _without_timing(first) == _without_timing(again)
    assert _without_timing(first) != _without_timing(other)
    assert [p["value"] for p in first["points"]] == [4, 16]
    assert set(first["points"][0]["variants"]) == {"plain", "bn"}
    assert first["points"][0]["variants"]["bn"]["status"] == "trained"


def test_divergence_is_marked_and_the_sweep_goes_on(digits: Dataset) -> None:
    base = _base(activation="relu", init="default", depth=2, width=32, steps=40)
    result = run_sweep(base, "lr", (0.1, 10.0), dataset=digits)
    calm, wild = (p["variants"]["plain"] for p in result["points"])
    assert calm["status"] == "trained"
    assert wild["status"] in ("diverged", "blew_up")
    json.dumps(result, allow_nan=False)


def test_batch_size_one_skips_bn_in_a_sweep(digits: Dataset) -> None:
    result = run_sweep(_base(variants=("bn", "ln")), "batch_size", (1,), dataset=digits)
    point = result["points"][0]
    assert point["variants"]["bn"]["status"] == "skipped"
    assert point["variants"]["ln"]["status"] == "trained"


def test_batch_statistic_noise_matches_numpy_over_the_same_batches(digits: Dataset) -> None:
    config = RunConfig(variants=("bn",), depth=1, width=6, seed=4)
    model = build_variants(config, 64, 10, torch.device("cpu"))["bn"]
    (noise,) = batch_statistics_noise(model, digits.x_train, 8, seed=9)
    generator = torch.Generator().manual_seed(9)
    weight = model.hidden()[0].linear.weight.detach().double().numpy()
    x = digits.x_train.double().numpy()
    batches = [
        x[torch.randperm(len(x), generator=generator)[:8].numpy()] @ weight.T
        for _ in range(NOISE_BATCHES)
    ]
    means = np.array([b.mean(0) for b in batches])
    variances = np.array([b.var(0, ddof=1) for b in batches])
    spread = variances.mean(0) * 7 / 8 + means.var(0, ddof=1)  # law of total variance
    assert abs(noise["mean"] - np.mean(means.std(0, ddof=1) / np.sqrt(spread))) < 1e-5
    assert abs(noise["var"] - np.mean(variances.std(0, ddof=1) / spread)) < 1e-5
    assert abs(noise["mean"] - 1 / np.sqrt(8)) < 0.1  # independent examples: about 1/sqrt(B)
    assert noise["reference"] == 1 / np.sqrt(8)


@pytest.mark.parametrize("batch", [2, 4, 16])
def test_batch_noise_of_iid_gaussian_features_is_one_over_sqrt_b(batch: int) -> None:
    # BN's input made exactly the data (identity weights): 64 i.i.d. N(0, 1) features. The std
    # of a batch mean is then 1/sqrt(B) of the feature's std, and the std of the unbiased
    # batch variance sqrt(2/(B-1)) of its variance. The biased estimator gave 1/sqrt(B+1)
    # (-18% at B = 2, -11% at B = 4), outside these tolerances.
    config = RunConfig(variants=("bn",), depth=1, width=64, steps=1, ics_every=0)
    model = build_variants(config, 64, 3, torch.device("cpu"))["bn"]
    with torch.no_grad():
        model.hidden()[0].linear.weight.copy_(torch.eye(64))
    x = torch.randn(20_000, 64, generator=torch.Generator().manual_seed(5))
    (noise,) = batch_statistics_noise(model, x, batch, seed=3)
    assert noise["mean"] == pytest.approx(1 / np.sqrt(batch), rel=0.05)
    assert noise["var"] == pytest.approx(np.sqrt(2 / (batch - 1)), rel=0.1)


# ---- derived fields (Scale) and seeds ----


def test_the_conv_sweep_matches_epochs_and_scales_lr_linearly() -> None:
    sweep = PRESETS["conv-batch-sweep"].sweep
    assert sweep is not None and sweep.scale is not None
    base = preset_config("conv-batch-sweep", {})
    assert (base.arch, base.batch_size) == ("cnn", sweep.scale.reference)
    for batch in sweep.values:
        point = point_config(base, sweep.field, batch, sweep.scale)
        assert point.batch_size == batch
        assert point.lr == pytest.approx(base.lr * batch / 32)  # Goyal et al.'s linear rule
        assert point.steps == round(base.steps * 32 / batch)
        # examples seen (epochs of the same data) equal the reference point's within a batch
        assert abs(point.steps * batch - base.steps * 32) <= batch
    assert point_config(base, "batch_size", 4).lr == base.lr  # no scale: one field changes


def test_a_derived_value_past_its_bound_fails_before_any_point_trains(digits: Dataset) -> None:
    scale = Scale(2, (("lr", "linear"),))
    done: list[int] = []
    with pytest.raises(ValidationError, match="lr"):  # lr 8 at batch 2 is 16 at batch 4
        run_sweep(
            _base(lr=8.0), "batch_size", (2, 4), lambda i, n, p: done.append(i), digits, scale=scale
        )
    assert done == []


def test_integer_fields_scale_to_rounded_integers_of_at_least_one() -> None:
    scale = Scale(8, (("steps", "inverse"), ("lr", "linear")))
    assert scale.derive(_base(steps=10, lr=0.4), 3) == {"steps": 27, "lr": pytest.approx(0.15)}
    assert scale.derive(_base(steps=1), 1000)["steps"] == 1


@pytest.mark.slow
def test_a_scaled_sweep_reports_its_scale_and_trains_each_points_steps(digits: Dataset) -> None:
    scale = Scale(8, (("steps", "inverse"),))
    result = run_sweep(_base(steps=4), "batch_size", (4, 8), dataset=digits, scale=scale)
    assert result["scale"] == {"reference": 8, "fields": {"steps": "inverse"}}
    # the same point run by hand with the derived steps (8 at batch 4) gives the same numbers
    alone = run_sweep(_base(steps=8), "batch_size", (4,), dataset=digits)
    assert json.dumps(result["points"][0]) == json.dumps(alone["points"][0])


@pytest.mark.slow
def test_seeds_give_each_points_mean_and_sample_std_over_the_single_seed_runs(
    digits: Dataset,
) -> None:
    result = run_sweep(_base(), "batch_size", (4, 16), dataset=digits, seeds=(0, 2, 5))
    assert result["seeds"] == [0, 2, 5]
    singles = [run_sweep(_base(seed=s), "batch_size", (4, 16), dataset=digits) for s in (0, 2, 5)]
    for k, point in enumerate(result["points"]):
        assert [r["seed"] for r in point["runs"]] == [0, 2, 5]
        for run, single in zip(point["runs"], singles, strict=True):
            assert run["variants"] == single["points"][k]["variants"]
        for variant in ("plain", "bn"):
            accs = [s["points"][k]["variants"][variant]["test"]["acc"] for s in singles]
            entry = point["variants"][variant]
            assert entry["test"]["acc"] == pytest.approx(np.mean(accs))
            assert entry["test_std"]["acc"] == pytest.approx(np.std(accs, ddof=1))
            assert entry["status"] == "trained" and entry["statuses"] == ["trained"] * 3
        noise = [s["points"][k]["batch_noise"]["bn"][0]["mean"] for s in singles]
        assert point["batch_noise"]["bn"][0]["mean"] == pytest.approx(np.mean(noise))
    json.dumps(result, allow_nan=False)


def test_a_point_over_seeds_is_trained_only_when_every_seed_trained() -> None:
    def run(status: str, acc: float | None) -> dict:
        test = None if acc is None else {"acc": acc, "loss": 1.0}
        entry = {"status": status, "diverged_at": 7 if acc is None else None, "loss": 1.0}
        return {"variants": {"plain": {**entry, "test": test}}, "batch_noise": {}}

    merged = over_seeds([run("trained", 0.5), run("diverged", None), run("trained", 0.7)])
    plain = merged["variants"]["plain"]
    assert plain["status"] == "diverged" and plain["diverged_at"] == 7
    assert plain["test"]["acc"] == pytest.approx(0.6)  # over the seeds that were scored
    assert plain["test_std"]["acc"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


@pytest.mark.slow
def test_the_sweep_report_shows_the_spread_plain_as_reference_and_the_scale(
    digits: Dataset,
) -> None:
    scale = Scale(8, (("lr", "linear"),))
    result = run_sweep(_base(), "batch_size", (2, 8), dataset=digits, scale=scale, seeds=(0, 1))
    page = render_sweep_report(result)
    match = re.search(r"const figures = (.*?);\n", page)
    assert match is not None
    plain, bn = json.loads(match.group(1).replace("<\\/", "</"))[0]["data"][:2]
    assert plain["line"]["dash"] == "dash" and "reference" in plain["name"]
    spread = [p["variants"]["bn"]["test_std"]["acc"] for p in result["points"]]
    assert bn["error_y"]["array"] == spread
    assert "lr scales linearly with batch_size (0.5 at 8)" in page
    assert "each over seeds [0, 1]" in page
    # an MLP batch sweep through batch 2 says its BN degenerates to a sign there
    assert "±1" in page and "not Wu &amp; He" in page


def test_seeds_are_for_sweeps_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seeds"):
        run_preset("paper-fig1", preset_config("paper-fig1", {}), tmp_path, seeds=(0, 1))
    assert main(["run", "--seeds", "0,1", "--out", str(tmp_path), "--steps", "2"]) == 2
    with pytest.raises(SystemExit):  # a repeated seed is refused by the parser
        main(["run", "--preset", "batch-sweep", "--seeds", "0,0", "--out", str(tmp_path)])
