"""The BN doctor finds the problems a run has by construction, with the right numbers, and none
in a healthy run; the live-model mode observer and the recalibration, against PyTorch/NumPy."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from covshift import cli
from covshift.config import RunConfig
from covshift.findings import Finding
from covshift.headless import run_headless
from covshift.reports import doctor
from covshift.reports.doctor import diagnose
from covshift.reports.doctor_text import render_text
from covshift.reports.runfile import RunUnreadable, read_run
from covshift.train.bn_modes import BNModeObserver
from covshift.train.recalibrate import recalibrate
from torch import nn

# ---- runs built by hand: every number known ----

WIDTH = 4


def hello(variants: dict[str, bool], **config: Any) -> dict[str, Any]:
    """A hello of `variants` (name -> batch_stats), two hidden layers of WIDTH units."""
    return {
        "v": 1,
        "type": "hello",
        "config": {"bn_momentum": 0.1, "bn_eps": 1e-5, "activation": "sigmoid", **config},
        "variants": {
            name: {"label": name, "batch_stats": stats, "taps": []}
            for name, stats in variants.items()
        },
    }


def bn_layer(
    batch_mean: list[float],
    running_mean: list[float] | None = None,
    batch_var: list[float] | None = None,
    running_var: list[float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    bn = {
        "batch_mean": batch_mean,
        "batch_var": batch_var or [1.0] * WIDTH,
        "running_mean": running_mean if running_mean is not None else batch_mean,
        "running_var": running_var or [1.0] * WIDTH,
        "gamma": [1.0] * WIDTH,
        "beta": [0.0] * WIDTH,
        **extra,
    }
    return {"taps": {}, "saturated": 0.0, "bn": bn}


def frame(step: int, batch_size: int, variants: dict[str, Any]) -> dict[str, Any]:
    return {"v": 1, "type": "frame", "step": step, "batch_size": batch_size, "variants": variants}


def entry(layers: list[dict[str, Any]], test: dict[str, Any] | None = None) -> dict[str, Any]:
    found = {"status": "training", "loss": 0.1, "acc": 0.9, "layers": layers}
    if test is not None:
        found["test"] = test
    return found


def steady_frames(batch_size: int = 60, frames: int = 5) -> list[dict[str, Any]]:
    """bn with batch means that agree with the running mean and barely move, plain healthy."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(frames):
        means = (0.01 * rng.standard_normal(WIDTH)).tolist()
        layer = bn_layer(means, running_mean=[0.0] * WIDTH)
        test = {"loss": 0.2, "acc": 0.95, "acc_train_mode": 0.94, "acc_population": 0.955}
        out.append(
            frame(
                50 * k,
                batch_size,
                {
                    "plain": entry([{"taps": {}, "saturated": 0.01, "bn": None}] * 2),
                    "bn": entry([layer, layer], test if k == frames - 1 else None),
                },
            )
        )
    return out


def codes(findings: list[Finding]) -> list[tuple[str, int | None, str]]:
    return [(f.variant, f.layer, f.code) for f in findings]


def test_a_healthy_hand_built_run_has_no_findings() -> None:
    assert diagnose(hello({"plain": False, "bn": True}), steady_frames()) == []


def test_train_eval_gap_says_which_mode_is_better_and_by_how_much() -> None:
    records = steady_frames(batch_size=8)
    records[-1]["variants"]["bn"]["test"] = {"acc": 0.90, "acc_train_mode": 0.75, "loss": 0.3}
    (found,) = [f for f in diagnose(hello({"bn": True}), records) if f.code == "train_eval_gap"]
    assert found.layer is None and found.severity == "warn"
    assert found.numbers["gap_points"] == pytest.approx(15.0)
    assert "forgetting model.eval() costs 15.0 points" in found.evidence
    assert "model.eval()" in found.fix

    records[-1]["variants"]["bn"]["test"] = {"acc": 0.70, "acc_train_mode": 0.80, "loss": 0.3}
    (found,) = [f for f in diagnose(hello({"bn": True}), records) if f.code == "train_eval_gap"]
    assert found.numbers["gap_points"] == pytest.approx(-10.0)
    assert "stale" in found.evidence and "update_bn" in found.fix


def test_train_eval_gap_within_the_threshold_is_quiet_and_one_example_past_it_fires() -> None:
    records = steady_frames()
    at = 0.9 - doctor.TRAIN_EVAL_GAP + 1e-9
    records[-1]["variants"]["bn"]["test"] = {"acc": 0.9, "acc_train_mode": at, "loss": 0.3}
    assert diagnose(hello({"bn": True}), records) == []
    records[-1]["variants"]["bn"]["test"]["acc_train_mode"] = at - 0.003  # one test example
    assert codes(diagnose(hello({"bn": True}), records)) == [("bn", None, "train_eval_gap")]


def test_population_beating_running_statistics_is_stale_running_stats() -> None:
    records = steady_frames()
    records[-1]["variants"]["bn"]["test"] = {
        "acc": 0.80,
        "acc_train_mode": 0.81,
        "acc_population": 0.85,
        "loss": 0.3,
    }
    (found,) = diagnose(hello({"bn": True}), records)
    assert found.code == "stale_running_stats"
    assert found.numbers["gain_points"] == pytest.approx(5.0)
    assert "torch.optim.swa_utils.update_bn(" in found.fix
    assert "about the last 19 batches" in found.evidence  # (2 - 0.1) / 0.1
    # Within the threshold: nothing.
    records[-1]["variants"]["bn"]["test"]["acc_population"] = 0.80 + doctor.POPULATION_GAIN - 1e-9
    assert diagnose(hello({"bn": True}), records) == []


def test_running_mean_shift_per_channel_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    batch_means = 0.02 * rng.standard_normal((6, WIDTH))  # the oldest falls out of the window
    running_mean = np.array([0.0, 1.5, -0.9, 0.3])
    running_var = np.array([1.0, 4.0, 0.25, 1.0])
    records = [
        frame(
            10 * k,
            64,
            {
                "bn": entry(
                    [
                        bn_layer(batch_means[k].tolist()),
                        bn_layer(
                            batch_means[k].tolist(),
                            running_mean=running_mean.tolist(),
                            running_var=running_var.tolist(),
                        ),
                    ]
                )
            },
        )
        for k in range(6)
    ]
    found = diagnose(hello({"bn": True}, bn_eps=1e-3), records)
    (off,) = [f for f in found if f.code == "running_mean_off"]
    assert off.layer == 1  # layer 0's running mean is its last batch mean: close to the rest
    recent = batch_means[-doctor.RECENT_FRAMES :]
    shift = np.abs(running_mean - recent.mean(axis=0)) / np.sqrt(running_var + 1e-3)
    over = [c for c in np.argsort(-shift) if shift[c] > doctor.RUNNING_MEAN_SHIFT]
    assert over == [2, 1]  # channel 2: 0.9 / 0.5 std; channel 1: 1.5 / 2 std; 3 is under
    assert off.numbers["worst_channels"] == over
    assert off.numbers["worst_shifts"] == pytest.approx(shift[over].tolist())
    assert off.numbers["channels_over"] == 2 and off.numbers["frames"] == doctor.RECENT_FRAMES
    assert f"2 ({shift[2]:.2f}), 1 ({shift[1]:.2f})" in off.evidence


def test_running_mean_threshold_grows_with_sampling_noise_at_small_batches() -> None:
    # At batch 2 sampling alone moves a mean by ~0.33 std: a 0.6 std gap is not evidence.
    records = steady_frames(batch_size=2)
    for record in records:
        for layer in record["variants"]["bn"]["layers"]:
            layer["bn"] = {**layer["bn"], "running_mean": [0.6] * WIDTH}
    found = diagnose(hello({"bn": True}), records)
    assert "running_mean_off" not in [f.code for f in found]
    noise = math.sqrt((1 / 5 + 0.1 / 1.9) / 2)
    records = steady_frames(batch_size=60)
    for record in records:
        for layer in record["variants"]["bn"]["layers"]:
            layer["bn"] = {**layer["bn"], "running_mean": [0.6] * WIDTH}
    found = [f for f in diagnose(hello({"bn": True}), records) if f.code == "running_mean_off"]
    assert len(found) == 2 and found[0].numbers["threshold"] == doctor.RUNNING_MEAN_SHIFT
    assert doctor.SHIFT_NOISE_MULTIPLE * noise > 0.6  # what kept batch 2 quiet


def test_noisy_batch_statistics_against_numpy_and_one_over_root_b() -> None:
    rng = np.random.default_rng(2)
    means = rng.normal(0.0, 0.35, (5, WIDTH))
    variances = rng.uniform(0.8, 1.2, (5, WIDTH))
    records = [
        frame(
            k,
            8,
            {"bn": entry([bn_layer(means[k].tolist(), batch_var=variances[k].tolist())] * 2)},
        )
        for k in range(5)
    ]
    (noisy,) = [f for f in diagnose(hello({"bn": True}), records) if f.code == "noisy_batch_stats"]
    expected = np.median(means.std(axis=0, ddof=1) / np.sqrt(variances.mean(axis=0)))
    assert noisy.numbers["noise_by_layer"] == pytest.approx([expected, expected])
    assert noisy.numbers["reference"] == pytest.approx(1 / math.sqrt(8))
    assert "GroupNorm" in noisy.fix and "LayerNorm" in noisy.fix
    # The same statistics at batch 16 are not flagged; the check is for small batches.
    for record in records:
        record["batch_size"] = doctor.SMALL_BATCH
    assert "noisy_batch_stats" not in [f.code for f in diagnose(hello({"bn": True}), records)]


def test_ghost_batches_count_as_the_batch_that_normalizes() -> None:
    records = steady_frames(batch_size=64)
    for record in records:
        for layer in record["variants"]["bn"]["layers"]:
            layer["bn"] = {**layer["bn"], "ghost_mean": [0.0] * WIDTH, "ghost_var": [1.0] * WIDTH}
    found = diagnose(hello({"bn": True}, ghost_batch_size=6), records)
    (noisy,) = [f for f in found if f.code == "noisy_batch_stats"]
    assert noisy.numbers["normalizing_batch"] == 6  # 64 cut into 10 ghost batches of 6 or 7
    assert diagnose(hello({"bn": True}, ghost_batch_size=20), records) == []


@pytest.mark.parametrize(
    ("share", "batch_size", "flagged"),
    [(0.5, 60, True), (0.2, 60, False), (0.4, 2, False), (0.6, 2, True)],
)
def test_dead_relu_units_above_threshold_and_chance(
    share: float, batch_size: int, flagged: bool
) -> None:
    layer = {"taps": {}, "dead": 0.6, "dead_units": share, "bn": None}
    records = [frame(k, batch_size, {"plain": entry([layer, layer])}) for k in range(3)]
    found = diagnose(hello({"plain": False}, activation="relu"), records)
    expected = [("plain", 0, "dead_units"), ("plain", 1, "dead_units")] if flagged else []
    assert codes(found) == expected
    if flagged:
        assert found[0].numbers["dead_units"] == pytest.approx(share)
        assert found[0].numbers["chance"] == pytest.approx(0.5**batch_size)


def test_saturated_layer_is_the_mean_over_recent_frames() -> None:
    shares = [0.1, 0.1, 0.3, 0.3, 0.3, 0.3, 0.3]  # the last five average 0.3
    records = [
        frame(k, 60, {"plain": entry([{"taps": {}, "saturated": s, "bn": None}])})
        for k, s in enumerate(shares)
    ]
    (found,) = diagnose(hello({"plain": False}), records)
    assert (found.layer, found.code) == (0, "saturated")
    assert found.numbers["saturated"] == pytest.approx(0.3)
    records[-1]["variants"]["plain"]["layers"][0]["saturated"] = 0.0  # mean 0.24
    assert diagnose(hello({"plain": False}), records) == []


def test_skipped_and_diverged_variants_are_info() -> None:
    reason = "BatchNorm cannot train on batch size 1"
    records: list[dict[str, Any]] = [
        {
            "v": 1,
            "type": "event",
            "step": 0,
            "kind": "skipped",
            "variants": ["bn"],
            "reason": reason,
        },
        *(
            frame(k, 1, {"bn": {"status": "skipped", "test": None}, "plain": entry([])})
            for k in range(3)
        ),
        {
            "v": 1,
            "type": "event",
            "step": 3,
            "kind": "diverged",
            "variant": "plain",
            "reason": "loss became non-finite",
        },
        frame(
            3, 1, {"bn": {"status": "skipped"}, "plain": {"status": "diverged", "diverged_at": 3}}
        ),
    ]
    found = diagnose(hello({"plain": False, "bn": True}), records)
    assert codes(found) == [("plain", None, "diverged"), ("bn", None, "skipped")]
    assert all(f.severity == "info" for f in found)
    assert found[0].numbers == {"step": 3} and "loss became non-finite" in found[0].evidence
    assert found[1].numbers == {"frames": 4, "first_step": 0} and reason in found[1].evidence


def test_nonfinite_statistics_and_damaged_records_do_not_crash() -> None:
    records = steady_frames()
    records[-1]["variants"]["bn"]["layers"][0]["bn"]["batch_mean"] = [None, 0.0, 0.0, 0.0]
    records.insert(2, {"type": "frame", "step": "x"})  # damaged: skipped
    assert diagnose(hello({"plain": False, "bn": True}), records) == []
    records[-1]["variants"]["plain"]["layers"] = ["junk"]  # damaged: plain left undiagnosed
    records[-1]["variants"]["bn"]["test"]["acc_train_mode"] = 0.5
    found = diagnose(hello({"plain": False, "bn": True}), records)
    assert codes(found) == [("bn", None, "train_eval_gap")]


def test_finding_json_has_no_nan() -> None:
    finding = Finding("bn", 0, "x", "warn", "t", "e", "f", {"a": math.nan, "b": [1.0, math.inf]})
    text = json.dumps(finding.to_json(), allow_nan=False)
    assert json.loads(text)["numbers"] == {"a": None, "b": [1.0, None]}


# ---- reading a run folder ----


def write_run(folder: Path, records: list[dict[str, Any]], tail: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (folder / "frames.jsonl").write_text(text)
    return folder


def test_read_run_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(RunUnreadable, match=str(tmp_path / "frames.jsonl")):
        read_run(tmp_path)
    write_run(tmp_path, [hello({"bn": True})], tail='{"type": "fra\n{}\n')
    _, records = read_run(tmp_path)
    with pytest.raises(RunUnreadable, match="line 2: damaged"):
        list(records)
    write_run(tmp_path, [{"type": "frame"}])
    with pytest.raises(RunUnreadable, match="line 1: the first record is not a hello"):
        read_run(tmp_path)


def test_a_line_still_being_written_is_left_out(tmp_path: Path) -> None:
    write_run(tmp_path, [hello({"bn": True}), *steady_frames()], tail='{"v": 1, "type": "fr')
    _, records = read_run(tmp_path)
    assert len(list(records)) == 5


def test_render_text_groups_by_variant_then_layer() -> None:
    records = steady_frames(batch_size=8)
    for record in records:
        record["variants"]["plain"]["layers"][1] = {"taps": {}, "saturated": 0.9, "bn": None}
    run_hello = hello({"plain": False, "bn": True, "ln": False})
    text = render_text(diagnose(run_hello, records), run_hello, "runs/x")
    assert text.splitlines()[0] == "runs/x: 2 warnings, 0 notes"
    plain, bn, ln = text.index("\nplain"), text.index("\nbn"), text.index("\nln")
    assert plain < text.index("hidden layer 2") < bn < text.index("whole network") < ln
    assert text[ln:].splitlines()[2] == "  no problems found"
    assert render_text([], run_hello, "runs/x") == "runs/x: no problems found (plain, bn, ln)\n"


def test_cli_doctor_text_json_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = steady_frames(batch_size=8)
    run = write_run(tmp_path / "run", [hello({"plain": False, "bn": True}), *records])
    assert cli.main(["doctor", str(run)]) == 0
    text = capsys.readouterr().out
    assert "[warn] batch statistics too noisy at 8 examples per normalization" in text
    assert cli.main(["doctor", str(run), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [f["code"] for f in shown["findings"]] == ["noisy_batch_stats"]
    assert cli.main(["doctor", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("covshift doctor: error: ")
    assert str(tmp_path / "missing" / "frames.jsonl") in error
    write_run(tmp_path / "bad", [hello({"bn": True})], tail="not json\n")
    assert cli.main(["doctor", str(tmp_path / "bad")]) == 2
    assert "line 2: damaged" in capsys.readouterr().err


# ---- real runs: problems known by construction ----


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    runs = {}
    for batch_size in (60, 4):
        config = RunConfig(
            dataset="digits",
            variants=("plain", "bn"),
            depth=2,
            width=32,
            steps=300,
            batch_size=batch_size,
            bins=8,
        )
        runs[batch_size] = tmp_path_factory.mktemp(f"batch{batch_size}")
        run_headless(config, runs[batch_size])
    return runs


@pytest.mark.slow
def test_a_real_run_at_batch_60_is_healthy(
    real_runs: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert diagnose(*read_run(real_runs[60])) == []
    assert cli.main(["doctor", str(real_runs[60])]) == 0
    assert capsys.readouterr().out == f"{real_runs[60]}: no problems found (plain, bn)\n"


@pytest.mark.slow
def test_a_real_run_at_batch_4_has_a_train_eval_gap_and_noisy_statistics(
    real_runs: dict[int, Path],
) -> None:
    found = diagnose(*read_run(real_runs[4]))
    by_code = {f.code: f for f in found if f.variant == "bn"}
    assert {"train_eval_gap", "noisy_batch_stats"} <= set(by_code)
    assert [f for f in found if f.variant == "plain"] == []
    # The numbers are the run's own: the summary's last test, and the frames' statistics.
    test = json.loads((real_runs[4] / "summary.json").read_text())["variants"]["bn"]["test"]
    gap = by_code["train_eval_gap"].numbers
    assert gap["gap_points"] == pytest.approx(100 * (test["acc"] - test["acc_train_mode"]))
    assert gap["gap_points"] > 100 * doctor.TRAIN_EVAL_GAP  # eval mode is the better one
    lines = (real_runs[4] / "frames.jsonl").read_text().splitlines()
    frames = [r for r in map(json.loads, lines) if r["type"] == "frame"][-doctor.RECENT_FRAMES :]
    layers = [f["variants"]["bn"]["layers"] for f in frames]
    means = np.array([[layer["bn"]["batch_mean"] for layer in ls] for ls in layers])
    variances = np.array([[layer["bn"]["batch_var"] for layer in ls] for ls in layers])
    noise = np.median(means.std(axis=0, ddof=1) / np.sqrt(variances.mean(axis=0)), axis=1)
    assert by_code["noisy_batch_stats"].numbers["noise_by_layer"] == pytest.approx(noise.tolist())


# ---- the live model: BN in the wrong mode ----


def bn_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_evaluating_in_train_mode_under_no_grad_is_flagged_and_moves_running_mean() -> None:
    model, x = bn_model(), torch.randn(16, 3) + 2.0
    observer = BNModeObserver(model, "net")
    with observer.observe(), torch.no_grad():
        model(x)  # model.eval() forgotten
    (found,) = observer.findings()
    assert (found.variant, found.layer, found.code) == ("net", 0, "bn_train_mode_in_eval")
    assert found.numbers == {"module": "1", "forwards": 1, "train_without_grad": 1}
    assert "moved running_mean/var" in found.evidence
    # PyTorch as the oracle: the evaluation batch went into the running mean (momentum 0.1).
    with torch.no_grad():
        batch_mean = model[0](x).mean(dim=0)
    assert torch.allclose(model[1].running_mean, 0.1 * batch_mean, atol=1e-6)
    assert model[1].running_mean.abs().max() > 0.01
    assert model[1]._forward_hooks == {}  # observe() removed its hook


def test_training_in_eval_mode_is_flagged() -> None:
    model, x, y = bn_model(), torch.randn(16, 3), torch.randint(0, 2, (16,))
    observer = BNModeObserver(model)
    model.eval()  # left on after an evaluation
    with observer.observe():
        for _ in range(3):
            nn.functional.cross_entropy(model(x), y).backward()
    (found,) = observer.findings()
    assert found.code == "bn_eval_mode_in_training" and found.numbers["eval_with_grad"] == 3
    assert "model.train()" in found.fix


def test_a_correct_loop_and_deliberately_frozen_bn_flag_nothing() -> None:
    model, x, y = bn_model(), torch.randn(16, 3), torch.randint(0, 2, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    observer = BNModeObserver(model)
    with observer.observe():
        for _ in range(3):
            model.train()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            model.eval()
            with torch.no_grad():
                model(x)
        model[1].requires_grad_(False)  # fine-tuning with BN frozen on purpose
        nn.functional.cross_entropy(model(x), y).backward()
    assert observer.findings() == []
    assert [c.forwards for c in observer.counts()] == [7]


# ---- recalibration ----


def test_recalibrate_sets_running_stats_to_the_data_and_scores_before_and_after() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(1, 1)
    model = nn.Sequential(linear, nn.BatchNorm1d(1), nn.Linear(1, 2))
    with torch.no_grad():  # BN sees x itself; class 1 when the normalized value is positive
        linear.weight.fill_(1.0)
        linear.bias.zero_()
        model[2].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[2].bias.zero_()
    x = 5.0 + torch.randn(400, 1)
    y = (linear(x).detach()[:, 0] > linear(x).detach()[:, 0].median()).long()
    batches = [(x[i : i + 50], y[i : i + 50]) for i in range(0, 400, 50)]
    model.eval()

    def accuracy(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(x).argmax(dim=1) == y).float().mean())

    result = recalibrate(model, batches, accuracy)
    inputs = linear(x).detach().numpy()[:, 0]  # the BN's inputs, batch by batch below
    chunks = inputs.reshape(8, 50)
    assert model[1].running_mean.item() == pytest.approx(inputs.mean(), abs=1e-5)
    assert model[1].running_var.item() == pytest.approx(chunks.var(axis=1, ddof=1).mean(), rel=1e-5)
    assert result["before"] == pytest.approx(0.5, abs=0.01)  # stale mean 0: one class for all
    assert result["after"] > 0.95
    assert result["bn_modules"] == 1 and result["model"] is model
    assert model[1].momentum == 0.1 and not model.training  # put back as they were


def test_recalibrate_on_a_copy_leaves_the_model_alone() -> None:
    model = bn_model()
    result = recalibrate(model, [torch.randn(8, 3) + 3.0], copy_model=True)
    assert torch.equal(model[1].running_mean, torch.zeros(4))
    assert result["model"] is not model and result["model"][1].running_mean.abs().sum() > 0
    assert result["before"] is None and result["after"] is None
