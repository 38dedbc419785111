"""Lessons: the registry, the claim kinds on hand-made records, scheduled changes, and every
lesson's claims holding on its default seed."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import covshift.headless
import pytest
import serverkit
import torch
from covshift.claims import NUMBERS, Claim, ClaimText, claim_text, evaluate, format_number
from covshift.config import MAX_SCHEDULE, RunConfig, describe
from covshift.errors import ConfigError
from covshift.headless import run_headless
from covshift.lessons import CHARTS, LESSONS, lesson_table
from covshift.train.data import Dataset
from covshift.train.trainer import Trainer
from covshift.variants import VARIANTS
from covshift.web.app import create_app
from covshift.web.rules import rules
from fastapi.testclient import TestClient
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]
HELLO = {"percentiles": [1, 15, 50, 85, 99]}
TEXT = {"en": ClaimText("holds {value}", "fails {value}")}
TAPS = {"linear_out", "norm_xhat", "norm_out", "act_input", "act_output"}


# ---- hand-made records ----


def frame(step: int, **variants: dict[str, Any]) -> dict[str, Any]:
    return {"v": 1, "type": "frame", "step": step, "variants": variants}


def with_tap(tap: str, stats: dict[str, Any], layer: int = 0) -> dict[str, Any]:
    layers: list[dict[str, Any]] = [{"taps": {}} for _ in range(layer + 1)]
    layers[layer]["taps"][tap] = stats
    return {"status": "training", "layers": layers}


def claim(kind: Any, threshold: float, compare: Any = ">=", /, **params: Any) -> Claim:
    return Claim(kind, params, threshold, TEXT, compare)


# ---- unit_drift_ratio ----

SHIFT = {"variant": "plain", "reference": "bn", "layer": 0}


def with_drift(unit_median: float | None, layer: int = 0) -> dict[str, Any]:
    layers: list[dict[str, Any]] = [{"taps": {}} for _ in range(layer + 1)]
    layers[layer]["drift_fixed"] = {"floor": 0.1, "unit_median": unit_median}
    return {"status": "training", "layers": layers}


def drift_frames() -> list[dict[str, Any]]:
    # plain: null (a variant's first frame), 1.5, 2.5 -> moved 4; bn: null, 0.25, 0.25 -> 0.5.
    plain, bn = [None, 1.5, 2.5], [None, 0.25, 0.25]
    return [
        frame(s, plain=with_drift(p), bn=with_drift(b))
        for s, p, b in zip((0, 50, 100), plain, bn, strict=True)
    ]


def test_unit_drift_ratio_holds_with_the_hand_computed_numbers() -> None:
    result = evaluate(
        claim("unit_drift_ratio", 2, from_step=0, to_step=100, **SHIFT), HELLO, drift_frames()
    )
    assert result.holds is True
    assert result.numbers == {"value": 8.0, "ratio": 8.0, "moved": 4.0, "reference_moved": 0.5}


def test_unit_drift_ratio_fails_below_its_threshold() -> None:
    result = evaluate(
        claim("unit_drift_ratio", 9, from_step=0, to_step=100, **SHIFT), HELLO, drift_frames()
    )
    assert result.holds is False and result.numbers["ratio"] == 8.0


def test_unit_drift_ratio_waits_for_its_range_and_counts_frames_both_variants_have() -> None:
    frames = drift_frames()
    unfinished = claim("unit_drift_ratio", 2, from_step=0, to_step=150, **SHIFT)
    assert evaluate(unfinished, HELLO, frames).holds is None  # no frame at step 150 yet
    one_frame = claim("unit_drift_ratio", 2, from_step=100, to_step=100, **SHIFT)
    assert evaluate(one_frame, HELLO, frames).holds is None
    frames.append(frame(150, plain=with_drift(7.0), bn=with_drift(None)))
    # a frame where one variant has no number counts for neither: still 4 against 0.5
    result = evaluate(
        claim("unit_drift_ratio", 2, from_step=0, to_step=150, **SHIFT), HELLO, frames
    )
    assert result.numbers["moved"] == 4.0 and result.numbers["reference_moved"] == 0.5


def test_unit_drift_ratio_reads_the_trainers_fixed_data_drift(
    small_config: RunConfig, digits: Dataset
) -> None:
    # On a real run's records: the sums of drift_fixed.unit_median, recomputed here.
    trainer = Trainer(small_config, digits)
    records = [trainer.hello()]
    while not trainer.done:
        records += trainer.train_step()
    frames = [r for r in records if r["type"] == "frame"]
    last = small_config.depth - 1
    sums = {
        v: sum(f["variants"][v]["layers"][last]["drift_fixed"]["unit_median"] for f in frames[1:])
        for v in ("plain", "bn")
    }
    params = {**SHIFT, "layer": last, "from_step": 0, "to_step": frames[-1]["step"]}
    result = evaluate(claim("unit_drift_ratio", 1, **params), records[0], records)
    assert result.numbers["moved"] == pytest.approx(sums["plain"], rel=1e-12)
    assert result.numbers["ratio"] == pytest.approx(sums["plain"] / sums["bn"], rel=1e-12)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_unit_drift_ratio_is_the_pages_unit_drift(tmp_path: Path) -> None:
    # The page's live sentence uses frontend/js/series.js's unitDrift: both on the same frames.
    rng = random.Random(0)
    frames = [
        frame(step, plain=with_drift(rng.uniform(0, 3), 1), bn=with_drift(rng.uniform(0, 1), 1))
        for step in range(0, 1000, 50)
    ]
    params = {**SHIFT, "layer": 1, "from_step": 200, "to_step": 800}
    python = evaluate(claim("unit_drift_ratio", 1, **params), HELLO, frames).numbers
    columns = [f for f in frames if 200 <= f["step"] <= 800]
    script = tmp_path / "ratio.mjs"
    script.write_text(
        f'import {{ unitDrift }} from "{ROOT / "frontend/js/series.js"}";\n'
        f"const columns = {json.dumps(columns)};\n"
        'console.log(JSON.stringify(unitDrift(columns, "plain", "bn", 1)));\n'
    )
    done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    js = json.loads(done.stdout)
    assert js["ratio"] == pytest.approx(python["ratio"], rel=1e-12)
    assert js["moved"] == pytest.approx(python["moved"], rel=1e-12)
    assert js["reference"] == pytest.approx(python["reference_moved"], rel=1e-12)


# ---- metric_gap ----

GAP = {"variant": "bn", "metric": "acc", "reference": "bn", "reference_metric": "acc_train_mode"}


def scored_frames() -> list[dict[str, Any]]:
    tests = [(0.9, 0.7), (0.8, 0.7), None, (0.7, None)]  # None: not scored at that step
    frames = []
    for step, pair in zip((100, 200, 300, 400), tests, strict=True):
        test = None if pair is None else {"acc": pair[0], "acc_train_mode": pair[1]}
        frames.append(frame(step, bn={"status": "training", "loss": 1.0, "test": test}))
    frames.append(frame(450, bn={"status": "training", "loss": 1.0}))  # no test at this step
    return frames


def test_metric_gap_averages_the_paired_tests() -> None:
    result = evaluate(
        claim("metric_gap", 0.1, from_step=0, to_step=450, **GAP), HELLO, scored_frames()
    )
    assert result.holds is True
    assert result.numbers["gap"] == pytest.approx((0.2 + 0.1) / 2)
    assert result.numbers["gap_points"] == pytest.approx(15.0)
    assert result.numbers["tests"] == 2


def test_metric_gap_fails_and_compares_both_ways() -> None:
    frames = scored_frames()
    assert (
        evaluate(claim("metric_gap", 0.2, from_step=0, to_step=400, **GAP), HELLO, frames).holds
        is False
    )
    at_most = claim("metric_gap", 0.2, "<=", from_step=0, to_step=400, **GAP)
    assert evaluate(at_most, HELLO, frames).holds is True


def test_metric_gap_needs_two_tests() -> None:
    frames = scored_frames()
    assert (
        evaluate(claim("metric_gap", 0, from_step=150, to_step=450, **GAP), HELLO, frames).holds
        is None
    )


# ---- loss_noise ----

NOISE = {"variant": "plain", "from_step": 0, "change_step": 40, "to_step": 70}


def loss_frames(before: list[float], after: list[float]) -> list[dict[str, Any]]:
    losses = before + after
    return [frame(10 * i, plain={"status": "training", "loss": v}) for i, v in enumerate(losses)]


def test_loss_noise_is_the_ratio_of_mean_frame_to_frame_changes() -> None:
    frames = loss_frames([1.0, 1.1, 1.0, 1.1], [1.0, 1.5, 1.0, 1.5])
    result = evaluate(claim("loss_noise", 3, **NOISE), HELLO, frames)
    assert result.holds is True
    assert result.numbers["before"] == pytest.approx(0.1)
    assert result.numbers["after"] == pytest.approx(0.5)
    assert result.numbers["ratio"] == pytest.approx(5.0)


def test_loss_noise_fails_when_nothing_changed_and_waits_for_three_frames() -> None:
    frames = loss_frames([1.0, 1.1, 1.0, 1.1], [1.0, 1.1, 1.0, 1.1])
    assert evaluate(claim("loss_noise", 3, **NOISE), HELLO, frames).holds is False
    short = loss_frames([1.0, 1.1], [1.0, 1.5, 1.0, 1.5])[:-1]
    assert evaluate(claim("loss_noise", 3, **{**NOISE, "to_step": 40}), HELLO, short).holds is None


# ---- event_present ----

SKIPPED = {"kind": "skipped", "match": {"variants": ["bn"]}, "from_step": 0, "to_step": 10}


def test_event_present_matches_kind_fields_and_steps() -> None:
    records = [
        {"type": "event", "step": 0, "kind": "skipped", "variants": ["bn", "brn"]},
        frame(10, plain={"status": "training"}),
    ]
    result = evaluate(claim("event_present", 1, **SKIPPED), HELLO, records)
    assert result.holds is True and result.numbers == {"value": 1.0, "count": 1.0, "step": 0.0}
    other = [{"type": "event", "step": 0, "kind": "skipped", "variants": ["ghost_bn"]}, records[1]]
    assert evaluate(claim("event_present", 1, **SKIPPED), HELLO, other).holds is False


def test_event_present_waits_until_the_range_is_run_through() -> None:
    records: list[dict[str, Any]] = [frame(5, plain={"status": "training"})]
    assert evaluate(claim("event_present", 1, **SKIPPED), HELLO, records).holds is None


# ---- xhat_standard ----

XHAT = {
    "variant": "bn",
    "layer": 0,
    "from_step": 0,
    "to_step": 100,
    "mean_tol": 0.01,
    "std_tol": 0.01,
}


def xhat_frames(xhat_std: float) -> list[dict[str, Any]]:
    frames = []
    for step, (out_mean, out_std) in zip(
        (0, 50, 100), ((0, 1), (0.1, 1.2), (0.3, 1.4)), strict=True
    ):
        entry = with_tap("norm_xhat", {"mean": 0.001, "std": xhat_std})
        entry["layers"][0]["taps"]["norm_out"] = {"mean": out_mean, "std": out_std}
        frames.append(frame(step, bn=entry))
    return frames


def test_xhat_standard_holds_while_gamma_and_beta_move_the_output() -> None:
    result = evaluate(claim("xhat_standard", 0.5, **XHAT), HELLO, xhat_frames(1.002))
    assert result.holds is True
    assert result.numbers["out_moved"] == pytest.approx(0.299 + 0.398)
    assert result.numbers["xhat_std"] == pytest.approx(0.002)


def test_xhat_standard_fails_off_standard_or_unmoved_and_waits() -> None:
    assert evaluate(claim("xhat_standard", 0.5, **XHAT), HELLO, xhat_frames(1.05)).holds is False
    assert evaluate(claim("xhat_standard", 0.8, **XHAT), HELLO, xhat_frames(1.002)).holds is False
    assert evaluate(claim("xhat_standard", 0.5, **XHAT), HELLO, xhat_frames(1.0)[:1]).holds is None


def test_every_kind_reports_the_numbers_it_documents() -> None:
    results = {
        "unit_drift_ratio": evaluate(
            claim("unit_drift_ratio", 1, from_step=0, to_step=100, **SHIFT), HELLO, drift_frames()
        ),
        "metric_gap": evaluate(
            claim("metric_gap", 0, from_step=0, to_step=450, **GAP), HELLO, scored_frames()
        ),
        "loss_noise": evaluate(
            claim("loss_noise", 1, **NOISE), HELLO, loss_frames([1, 2, 1, 2], [1, 2, 1, 2])
        ),
        "event_present": evaluate(
            claim("event_present", 1, **SKIPPED),
            HELLO,
            [{"type": "event", "step": 0, "kind": "skipped", "variants": ["bn"]}],
        ),
        "xhat_standard": evaluate(claim("xhat_standard", 0, **XHAT), HELLO, xhat_frames(1.0)),
    }
    assert set(results) == set(NUMBERS)
    for kind, result in results.items():
        assert set(result.numbers) == {"value", *NUMBERS[kind]}, kind


def test_numbers_are_written_as_the_page_writes_them() -> None:
    cases = {0.12345: "0.123", 3.0566: "3.06", 17.94: "17.9", 123.4: "123", -0.0212: "-0.021"}
    cases |= {5.26e-08: "0", 2.0: "2", math.inf: "∞"}
    assert {x: format_number(x) for x in cases} == cases
    shift = claim("unit_drift_ratio", 2, from_step=0, to_step=100, **SHIFT)
    assert claim_text(shift, evaluate(shift, HELLO, drift_frames())) == "holds 8"


# ---- scheduled changes ----


def scheduled(small_config: RunConfig, schedule: list[dict[str, Any]], **values: Any) -> RunConfig:
    return RunConfig.model_validate({**small_config.model_dump(), "schedule": schedule, **values})


def test_a_schedule_changes_the_controls_before_its_steps(
    small_config: RunConfig, digits: Dataset
) -> None:
    config = scheduled(
        small_config,
        [
            {"step": 3, "lr": 0.5},  # the value it has: changes nothing, records nothing
            {"step": 5, "lr": 0.1},
            {"step": 10, "batch_size": 8},
            {"step": 15, "bn_momentum": None},
        ],
    )
    trainer = Trainer(config, digits)
    events, frames = [], {}
    plain = trainer.models["plain"]
    while trainer.step < 16:
        step = trainer.step
        before = [p.detach().clone() for p in plain.parameters()]
        records = trainer.train_step()
        events += [r for r in records if r["type"] == "event"]
        frames.update({r["step"]: r for r in records if r["type"] == "frame"})
        if step in (4, 5):  # plain SGD without momentum: w' = w - lr * grad
            lr = 0.5 if step == 4 else 0.1
            for old, p in zip(before, plain.parameters(), strict=True):
                assert p.grad is not None
                torch.testing.assert_close(old - p.detach(), lr * p.grad)
    assert [(e["step"], e["kind"], e["value"], e["previous"]) for e in events] == [
        (5, "lr", 0.1, 0.5),
        (10, "batch_size", 8, 32),
        (15, "bn_momentum", None, 0.1),
    ]
    assert all(e["scheduled"] is True for e in events)
    assert [g["lr"] for o in trainer.optimizers.values() for g in o.param_groups] == [0.1, 0.1]
    assert (frames[9]["batch_size"], frames[10]["batch_size"]) == (32, 8)
    assert (frames[4]["lr"], frames[5]["lr"]) == (0.5, 0.1)
    norms = [m for m in trainer.models["bn"].modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and all(m.momentum is None for m in norms)


def test_a_scheduled_batch_size_one_says_which_variants_it_skips(
    small_config: RunConfig, digits: Dataset
) -> None:
    trainer = Trainer(scheduled(small_config, [{"step": 2, "batch_size": 1}]), digits)
    records = [r for _ in range(3) for r in trainer.train_step()]
    events = [(r["step"], r["kind"], r.get("scheduled")) for r in records if r["type"] == "event"]
    assert events == [(2, "batch_size", True), (2, "skipped", True)]


def test_a_schedule_survives_a_trip_through_json(small_config: RunConfig) -> None:
    # Unset bn_momentum must not come back as null, which would mean the cumulative average.
    config = scheduled(small_config, [{"step": 5, "lr": 0.1}, {"step": 6, "bn_momentum": None}])
    again = RunConfig.model_validate_json(config.model_dump_json())
    assert [c.changes() for c in again.schedule] == [{"lr": 0.1}, {"bn_momentum": None}]
    assert config.model_dump(mode="json")["schedule"] == [
        {"step": 5, "lr": 0.1},
        {"step": 6, "bn_momentum": None},
    ]


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ([{"step": 0, "lr": 0.1}], "schedule.0.step"),
        ([{"step": 40, "lr": 0.1}], "schedule: step 40 is not before the run's end"),
        ([{"step": 5}], "schedule.0: an entry sets at least one of"),
        ([{"step": 5, "lr": 10.5}], "schedule.0.lr"),
        ([{"step": 5, "batch_size": 4097}], "schedule.0.batch_size"),
        ([{"step": 5, "bn_momentum": 0}], "schedule.0.bn_momentum"),
        ([{"step": 5, "lr": 0.1}, {"step": 5, "batch_size": 4}], "schedule: one entry per step"),
        ([{"step": 5, "lr": 0.1, "momentum": 0.2}], "schedule.0.momentum"),
        ([{"step": "5", "lr": 0.1}], "schedule.0.step"),  # strict, as the API's bodies
        ([{"step": True, "lr": 0.1}], "schedule.0.step"),
        ([{"step": 5, "lr": "0.1"}], "schedule.0.lr"),
        (
            [{"step": s, "lr": 0.1} for s in range(1, MAX_SCHEDULE + 2)],
            "schedule: Tuple should have at most 32 items",
        ),
    ],
)
def test_a_bad_schedule_is_refused_naming_it(
    small_config: RunConfig, schedule: list[dict[str, Any]], says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        scheduled(small_config, schedule)
    assert says in describe(caught.value)


def test_the_longest_schedule_is_accepted(small_config: RunConfig) -> None:
    entries = [{"step": s, "lr": 0.1 + s / 100} for s in range(1, MAX_SCHEDULE + 1)]
    assert len(scheduled(small_config, entries).schedule) == MAX_SCHEDULE


def test_batch_size_one_for_batch_statistics_only_is_refused_in_the_config() -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(variants=("bn",), schedule=({"step": 5, "batch_size": 1},))  # type: ignore[arg-type]
    assert describe(caught.value).startswith("schedule: at step 5, BatchNorm cannot train")


def test_a_batch_larger_than_the_data_is_refused_before_training(
    small_config: RunConfig, digits: Dataset
) -> None:
    too_big = len(digits.y_train) + 1
    with pytest.raises(ConfigError, match=f"schedule: at step 20, batch_size: {too_big} is more"):
        Trainer(scheduled(small_config, [{"step": 20, "batch_size": too_big}]), digits)


def test_the_memory_check_counts_the_largest_scheduled_batch(small_config: RunConfig) -> None:
    config = scheduled(
        small_config, [{"step": 5, "batch_size": 1024}, {"step": 9, "batch_size": 64}]
    )
    needed = config.memory_estimate_mb(1024)
    assert needed > config.memory_estimate_mb()
    config.check_memory(needed)  # at the limit: accepted
    with pytest.raises(ConfigError, match="batch_size, schedule: the run would need"):
        config.check_memory(needed - 1)


# ---- the registry ----


def test_the_lessons_follow_the_notes() -> None:
    assert [lesson.id for lesson in LESSONS] == [
        "mini-batch-sgd",
        "internal-covariate-shift",
        "normalize-scale-shift",
        "train-vs-inference",
        "small-batches",
        "alternatives",
    ]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.id)
def test_a_lesson_is_consistent_data(lesson: Any) -> None:
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", lesson.id)
    config = lesson.config()
    assert 2000 <= config.steps <= 6000  # about a minute on a laptop
    assert set(lesson.watch.charts) <= set(CHARTS) and lesson.watch.charts
    assert 0 <= lesson.watch.layer < config.depth and lesson.watch.tap in TAPS
    assert set(lesson.text) == {"en", "ko"}
    assert all(t.title and t.body.count(".") >= 2 for t in lesson.text.values())
    assert lesson.claims
    for each in lesson.claims:
        params = each.params
        assert params["to_step"] < config.steps and params["from_step"] <= params["to_step"]
        named = {params.get(k) for k in ("variant", "reference")} - {None}
        assert named <= set(config.variants) and named <= set(VARIANTS)
        for words in each.text.values():
            for sentence in (words.holds, words.fails):
                fields = set(re.findall(r"{(\w+)}", sentence))
                assert fields <= {"value", *NUMBERS[each.kind]}, (lesson.id, sentence)
    # what the page gets is the same config
    assert RunConfig.model_validate(lesson.to_json()["values"]) == config


def test_the_rules_carry_the_lessons() -> None:
    assert rules().lessons == lesson_table()
    assert [entry["id"] for entry in rules().lessons] == [lesson.id for lesson in LESSONS]
    assert json.loads(json.dumps(lesson_table(), allow_nan=False)) == lesson_table()


@pytest.mark.slow  # each POST starts a worker process
def test_the_api_starts_every_lesson(tmp_path: Path) -> None:
    with TestClient(create_app(serverkit.settings(tmp_path, max_runs=1))) as client:
        listed = client.get("/api/rules").json()["lessons"]
        assert [entry["id"] for entry in listed] == [lesson.id for lesson in LESSONS]
        for entry in listed:
            created = client.post("/api/runs", json=entry["values"])
            assert created.status_code == 201, (entry["id"], created.text)
            info = created.json()
            assert info["config"]["schedule"] == entry["values"].get("schedule", [])
            assert client.delete(f"/api/runs/{info['id']}").status_code == 200


# ---- every lesson shows what it claims ----


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.id)
def test_the_lesson_shows_its_claims(
    lesson: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report is tested elsewhere; skipping it saves seconds per lesson.
    monkeypatch.setattr(covshift.headless, "_write_report", lambda out, render: None)
    # Only as far as the claims look (plus the last, always probed step), nothing else changed.
    end = max(each.params["to_step"] for each in lesson.claims)
    config = lesson.config(steps=min(lesson.config().steps, end + 2))
    run_headless(config, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    for each in lesson.claims:
        result = evaluate(each, lines[0], lines[1:])
        assert result.holds is True, (lesson.id, each.kind, result.numbers)
        print(lesson.id, each.kind, claim_text(each, result), result.numbers)


# ---- the page judges claims with the same formulas (frontend/js/claims.js) ----


def cross_check_cases() -> list[tuple[Claim, list[dict[str, Any]]]]:
    """Every kind on the hand-made records above: holding, failing and undecided."""
    one_sided = [*drift_frames(), frame(150, plain=with_drift(7.0), bn=with_drift(None))]
    rng = random.Random(1)
    wandering = [
        frame(step, plain=with_drift(rng.uniform(0, 3), 1), bn=with_drift(rng.uniform(0, 1), 1))
        for step in range(0, 1000, 50)
    ]
    skipped_event = {"type": "event", "step": 0, "kind": "skipped", "variants": ["bn", "brn"]}
    trained = frame(10, plain={"status": "training"})
    return [
        (claim("unit_drift_ratio", 2, from_step=0, to_step=100, **SHIFT), drift_frames()),
        (claim("unit_drift_ratio", 9, from_step=0, to_step=100, **SHIFT), drift_frames()),
        (claim("unit_drift_ratio", 2, from_step=0, to_step=150, **SHIFT), drift_frames()),
        (claim("unit_drift_ratio", 2, from_step=100, to_step=100, **SHIFT), drift_frames()),
        (claim("unit_drift_ratio", 2, from_step=0, to_step=150, **SHIFT), one_sided),
        (
            claim("unit_drift_ratio", 2, from_step=200, to_step=800, **{**SHIFT, "layer": 1}),
            wandering,
        ),
        (claim("metric_gap", 0.1, from_step=0, to_step=450, **GAP), scored_frames()),
        (claim("metric_gap", 0.2, from_step=0, to_step=400, **GAP), scored_frames()),
        (claim("metric_gap", 0.2, "<=", from_step=0, to_step=400, **GAP), scored_frames()),
        (claim("metric_gap", 0, from_step=150, to_step=450, **GAP), scored_frames()),
        (claim("loss_noise", 3, **NOISE), loss_frames([1.0, 1.1, 1.0, 1.1], [1.0, 1.5, 1.0, 1.5])),
        (claim("loss_noise", 3, **NOISE), loss_frames([1.0, 1.1, 1.0, 1.1], [1.0, 1.1, 1.0, 1.1])),
        (claim("loss_noise", 3, **NOISE), loss_frames([1.0, 1.0, 1.0], [1.0, 1.5, 1.0, 1.5])),
        (
            claim("loss_noise", 3, **{**NOISE, "to_step": 40}),
            loss_frames([1.0, 1.1], [1.0, 1.5, 1.0, 1.5])[:-1],
        ),
        (claim("event_present", 1, **SKIPPED), [skipped_event, trained]),
        (claim("event_present", 1, **SKIPPED), [{**skipped_event, "variants": ["x"]}, trained]),
        (claim("event_present", 1, **SKIPPED), [frame(5, plain={"status": "training"})]),
        (claim("event_present", 1, **SKIPPED), [skipped_event]),
        (claim("xhat_standard", 0.5, **XHAT), xhat_frames(1.002)),
        (claim("xhat_standard", 0.5, **XHAT), xhat_frames(1.05)),
        (claim("xhat_standard", 0.8, **XHAT), xhat_frames(1.002)),
        (claim("xhat_standard", 0.5, **XHAT), xhat_frames(1.0)[:1]),
    ]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_judges_every_kind_as_the_server_does(tmp_path: Path) -> None:
    cases = cross_check_cases()
    assert {each.kind for each, _ in cases} == set(NUMBERS)
    numbers = [0.12345, 3.0566, 123.4, 100.5, 101.5, -0.0212, 5.26e-08, 0.0625, 1.125, 99.95]
    numbers += [18.255, 0.0005, 2.0, -250.5, 0.1 + 0.2, 9.995, 0.9995]
    (tmp_path / "cases.json").write_text(
        json.dumps(
            {
                "hello": {"type": "hello", **HELLO},
                "cases": [[each.to_json(), records] for each, records in cases],
                "numbers": numbers,
            }
        )
    )
    js = ROOT / "frontend/js"
    script = tmp_path / "judge.mjs"
    script.write_text(
        "import { readFileSync } from 'node:fs';\n"
        "import { evaluateClaim, evaluateRecords, formatClaimNumber }"
        f' from "{js / "claims.js"}";\n'
        f'import {{ applyMessage, createState }} from "{js / "state.js"}";\n'
        f"const input = JSON.parse(readFileSync({json.dumps(str(tmp_path / 'cases.json'))}));\n"
        "const judged = input.cases.map(([claim, records]) => {\n"
        "  let state = createState();\n"
        "  for (const m of [input.hello, ...records])\n"
        "    state = applyMessage(state, structuredClone(m));\n"
        "  return [evaluateRecords(claim, input.hello, records), evaluateClaim(claim, state)];\n"
        "});\n"
        "const written = input.numbers.map(formatClaimNumber);\n"
        "console.log(JSON.stringify({ judged, written }));\n"
    )
    done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    for (each, records), results in zip(cases, answer["judged"], strict=True):
        python = evaluate(each, HELLO, records)
        for result in results:  # from the records, and from the page's state
            assert result["holds"] == python.holds, (each.kind, each.params, result)
            assert result["numbers"] == pytest.approx(python.numbers, rel=1e-12), each.kind
    assert any(python.holds is True for python in (evaluate(c, HELLO, r) for c, r in cases))
    assert answer["written"] == [format_number(x) for x in numbers]
