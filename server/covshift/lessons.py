"""The lessons: one run per concept of the notes, as data (config, schedule, charts, text, claims).

Torch-free and above every layer: the page reads the registry through GET /api/rules and
starts a lesson by posting its `values` as a run config; tests run each lesson headless and
assert its claims (covshift.claims) on the frames. docs/lessons.md says what each shows and
the numbers the default seed gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .claims import Claim, ClaimText
from .config import RunConfig
from .wire import Json

# The page's chart ids a lesson may point at.
Chart = Literal["lesson", "loss", "accuracy", "bn", "inference", "drift", "ics", "taps"]
CHARTS: tuple[str, ...] = ("lesson", "loss", "accuracy", "bn", "inference", "drift", "ics", "taps")


@dataclass(frozen=True)
class Watch:
    """Where to look: the charts, in order of importance, and the layer (0-based) and tap."""

    charts: tuple[Chart, ...]
    layer: int
    tap: str


@dataclass(frozen=True)
class LessonText:
    title: str
    body: str  # two or three sentences: what to look for


@dataclass(frozen=True)
class Lesson:
    """A concept of the notes as a run: config values on top of RunConfig's defaults."""

    id: str
    values: Mapping[str, Any]  # a run config (its schedule included), as the API takes it
    watch: Watch
    text: Mapping[str, LessonText]  # by language: "en", "ko"
    claims: tuple[Claim, ...]

    def config(self, **overrides: Any) -> RunConfig:
        return RunConfig.model_validate({**self.values, **overrides})

    def to_json(self) -> dict[str, Json]:
        return {
            "id": self.id,
            "values": self.config().model_dump(mode="json", include=set(self.values)),
            "watch": {
                "charts": list(self.watch.charts),
                "layer": self.watch.layer,
                "tap": self.watch.tap,
            },
            "text": {lang: {"title": t.title, "body": t.body} for lang, t in self.text.items()},
            "claims": [claim.to_json() for claim in self.claims],
        }


def _text(en: tuple[str, str], ko: tuple[str, str]) -> dict[str, ClaimText]:
    return {"en": ClaimText(*en), "ko": ClaimText(*ko)}


def _lesson_text(en: tuple[str, str], ko: tuple[str, str]) -> dict[str, LessonText]:
    return {"en": LessonText(*en), "ko": LessonText(*ko)}


# Every lesson trains the paper's 3x100 sigmoid network (RunConfig's defaults).
DEPTH = RunConfig.model_fields["depth"].default
LAST = DEPTH - 1


# ---- 1. mini-batch SGD: one update per batch of B, the gradient averaged over B ----

_SMALL_AT = 1500  # the batch of 60 shrinks to 4 once the loss has settled

MINI_BATCH = Lesson(
    id="mini-batch-sgd",
    values={
        "variants": ("plain", "bn"),
        "batch_size": 60,
        "steps": 3000,
        "probe_every": 20,
        "test_every": 250,
        "schedule": ({"step": _SMALL_AT, "batch_size": 4},),
    },
    watch=Watch(("loss", "accuracy"), LAST, "act_input"),
    text=_lesson_text(
        (
            "Mini-batch SGD: what a batch is",
            "Each step averages the gradient over one batch of B examples and updates the "
            "weights once. Up to step 1500 a batch holds 60 examples, then only 4: watch the "
            "training loss (measured on each step's batch) turn jumpy, because an average of "
            "4 examples varies far more from batch to batch than one of 60.",
        ),
        (
            "Mini-batch SGD: Batch란 무엇인가",
            "한 step마다 B개 데이터의 gradient를 평균 내어 가중치를 한 번 업데이트합니다. "
            "1500 step까지는 Batch 하나에 60개, 그다음부터는 4개만 들어갑니다. 각 step의 "
            "Batch로 잰 training loss가 갑자기 크게 흔들리는 것을 보세요. 데이터 4개의 "
            "평균은 60개의 평균보다 Batch마다 훨씬 많이 달라지기 때문입니다.",
        ),
    ),
    claims=(
        Claim(
            "loss_noise",
            {"variant": "plain", "from_step": 1000, "change_step": _SMALL_AT, "to_step": 2000},
            threshold=3.0,
            text=_text(
                (
                    "At batch 4 plain's training loss jumps {ratio}× as much from frame to "
                    "frame as at batch 60.",
                    "This run does not show it: plain's loss moves only {ratio}× as much at "
                    "batch 4 as at batch 60.",
                ),
                (
                    "Batch 4에서 plain의 training loss는 frame마다 Batch 60일 때보다 {ratio}배 "
                    "더 크게 흔들립니다.",
                    "이번 run에서는 드러나지 않았습니다: Batch 4에서 plain의 loss 변화가 Batch "
                    "60일 때의 {ratio}배에 그칩니다.",
                ),
            ),
        ),
    ),
)


# ---- 2. internal covariate shift: plain's layer inputs drift, BN's hold ----

# Judged on the same held-out examples every frame (drift_fixed), so what it counts is the
# parameters' doing, not which batch was drawn. On MNIST-1D at lr 2 both nets are still
# learning here; plain's units moved 2.8-4.6x as far as BN's over steps 0-1,500 (seeds 0-2).
# On digits both have learned by step ~500 and the ratio falls below 1 after it.
_SHIFT_UNTIL = 1500

ICS = Lesson(
    id="internal-covariate-shift",
    values={
        "variants": ("plain", "bn"),
        "dataset": "mnist1d",
        "lr": 2.0,
        "steps": 4000,
        "steps_per_s": 100,
        "probe_every": 20,
        "test_every": 200,
        "ics_every": 100,
    },
    watch=Watch(("lesson", "drift", "ics"), LAST, "act_input"),
    text=_lesson_text(
        (
            "Internal covariate shift",
            "Every update changes the earlier layers, so the input of a later layer keeps "
            "changing its distribution. Watch the last layer's sigmoid input: plain's "
            "15–85% band wanders and widens, while BN's stays put, because BN normalizes it "
            "with each batch's mean and variance. The dotted lines are one unit on the same "
            "held-out examples every frame: what moves there is the network, not the batch.",
        ),
        (
            "Internal Covariate Shift",
            "업데이트할 때마다 앞쪽 layer의 파라미터가 바뀌므로, 뒤쪽 layer의 입력 분포도 계속 "
            "달라집니다. 마지막 layer의 sigmoid 입력을 보세요: plain의 15–85% 구간은 이리저리 "
            "움직이고 넓어지지만, BN은 Batch마다 평균과 분산으로 정규화하므로 거의 그대로 "
            "유지됩니다. 점선은 매 frame 같은 검증 샘플에서 본 유닛 하나입니다: 거기서 "
            "움직이는 것은 Batch가 아니라 네트워크입니다.",
        ),
    ),
    claims=(
        Claim(
            "unit_drift_ratio",
            {
                "variant": "plain",
                "reference": "bn",
                "layer": LAST,
                "from_step": 0,
                "to_step": _SHIFT_UNTIL,
            },
            threshold=2.0,
            text=_text(
                (
                    f"Over steps 0–{_SHIFT_UNTIL}, on the same held-out examples, plain's "
                    "last-layer units moved {ratio}× as far as BN's.",
                    "This run does not show it: on the same held-out examples plain's units "
                    f"moved only {{ratio}}× as far as BN's over steps 0–{_SHIFT_UNTIL}.",
                ),
                (
                    f"0–{_SHIFT_UNTIL} step 동안 같은 검증 샘플에서 마지막 layer의 plain 유닛은 "
                    "BN보다 {ratio}배 더 멀리 움직였습니다.",
                    f"이번 run에서는 드러나지 않았습니다: 0–{_SHIFT_UNTIL} step 동안 같은 검증 "
                    "샘플에서 plain의 유닛은 BN의 {ratio}배만 움직였습니다.",
                ),
            ),
        ),
    ),
)


# ---- 3. normalize, then scale and shift; BN before the activation against after it ----

SCALE_SHIFT = Lesson(
    id="normalize-scale-shift",
    values={
        "variants": ("plain", "bn", "bn_after"),
        "steps": 3000,
        "probe_every": 25,
        "test_every": 200,
    },
    watch=Watch(("taps", "lesson"), LAST, "norm_xhat"),
    text=_lesson_text(
        (
            "Normalize, then scale and shift",
            "BN first makes each feature zero-mean, unit-variance over the batch (x̂), then "
            "scales and shifts it with learned γ and β (γx̂+β), so the network can pick the "
            "distribution that suits the activation. Compare x̂, which stays at mean 0 and "
            "std 1, with γx̂+β, which moves as γ and β learn; and BN before the sigmoid "
            "with BN after it, whose sigmoid input is not normalized.",
        ),
        (
            "정규화한 뒤 scale과 shift",
            "BN은 먼저 각 feature를 Batch 안에서 평균 0, 표준편차 1로 정규화하고(x̂), "
            "학습되는 γ와 β로 곱하고 더해(γx̂+β) activation에 맞는 분포를 스스로 찾게 합니다. "
            "평균 0, 표준편차 1에 머무는 x̂와 γ, β가 학습되며 움직이는 γx̂+β를 비교해 보세요. "
            "Activation 앞의 BN과, sigmoid 입력이 정규화되지 않는 activation 뒤의 BN도 "
            "비교해 보세요.",
        ),
    ),
    claims=(
        Claim(
            "xhat_standard",
            {
                "variant": "bn",
                "layer": LAST,
                "from_step": 0,
                "to_step": 1000,
                "mean_tol": 0.01,
                "std_tol": 0.01,
            },
            threshold=0.2,
            text=_text(
                (
                    "BN's x̂ stays standard (largest |mean| {xhat_mean}, largest |std − 1| "
                    "{xhat_std}) while γx̂+β has moved to mean {out_mean}, std {out_std}: γ "
                    "and β at work.",
                    "This run does not show it: x̂ is off by mean {xhat_mean}, std {xhat_std}, "
                    "or γx̂+β moved only {out_moved}.",
                ),
                (
                    "BN의 x̂는 표준 분포를 유지하지만(가장 큰 |평균| {xhat_mean}, 가장 큰 "
                    "|표준편차 − 1| {xhat_std}), γx̂+β는 평균 {out_mean}, 표준편차 "
                    "{out_std}로 움직였습니다: γ와 β가 학습된 결과입니다.",
                    "이번 run에서는 드러나지 않았습니다: x̂의 평균이 {xhat_mean}, 표준편차가 "
                    "{xhat_std}만큼 벗어났거나, γx̂+β가 {out_moved}만 움직였습니다.",
                ),
            ),
        ),
    ),
)


# ---- 4. training against inference: batch statistics, running averages, model.eval() ----

_FORGETFUL_AT = 1000  # BN's running averages start to keep only the newest batch

TRAIN_INFERENCE = Lesson(
    id="train-vs-inference",
    values={
        "variants": ("plain", "bn"),
        # Batches of 4: the running averages, once they keep mostly the newest batch, are as
        # noisy as its statistics, which every seed tried shows as several points of accuracy.
        "batch_size": 4,
        "steps": 3000,
        "probe_every": 50,
        "test_every": 100,
        "compare_cumulative": True,
        "schedule": ({"step": _FORGETFUL_AT, "bn_momentum": 0.9},),
    },
    watch=Watch(("inference", "bn"), LAST, "act_input"),
    text=_lesson_text(
        (
            "Training against inference",
            "In training BN normalizes with the batch's own mean and variance; at inference "
            "it uses fixed running averages kept during training. Forgetting model.eval() "
            "keeps the batch statistics at test time, and with batches of 4 that costs "
            "accuracy. From step 1000 the running averages weigh the newest batch 0.9: "
            "they follow each noisy batch, and the cumulative average of all batches "
            "scores better.",
        ),
        (
            "학습단계와 추론단계",
            "학습단계에서 BN은 Batch 자체의 평균과 분산으로 정규화하지만, 추론단계에서는 "
            "학습 중에 구해 둔 고정된 이동평균을 씁니다. model.eval()을 잊으면 테스트에서도 "
            "Batch 통계를 쓰게 되고, Batch 4에서는 정확도가 떨어집니다. 1000 step부터는 "
            "지수평균이 가장 최근 Batch에 0.9의 가중치를 주므로 Batch마다 흔들리고, 모든 "
            "Batch의 누적 평균이 더 나은 정확도를 냅니다.",
        ),
    ),
    claims=(
        Claim(
            "metric_gap",
            {
                "variant": "bn",
                "metric": "acc",
                "reference": "bn",
                "reference_metric": "acc_train_mode",
                "from_step": 200,
                "to_step": _FORGETFUL_AT - 1,
            },
            threshold=0.05,
            text=_text(
                (
                    "Forgetting model.eval() cost BN {gap_points} points of test accuracy "
                    "(mean over {tests} tests).",
                    "This run does not show it: with model.eval() forgotten BN lost only "
                    "{gap_points} points.",
                ),
                (
                    "model.eval()을 잊으면 BN의 테스트 정확도가 {gap_points}%p 떨어졌습니다"
                    "(테스트 {tests}번 평균).",
                    "이번 run에서는 드러나지 않았습니다: model.eval()을 잊어도 {gap_points}%p만 "
                    "떨어졌습니다.",
                ),
            ),
        ),
        Claim(
            "metric_gap",
            {
                "variant": "bn",
                "metric": "acc_cumulative",
                "reference": "bn",
                "reference_metric": "acc",
                "from_step": _FORGETFUL_AT + 100,
                "to_step": 2000,
            },
            threshold=0.02,
            text=_text(
                (
                    "With momentum 0.9 the cumulative average beats the running average by "
                    "{gap_points} points of test accuracy.",
                    "This run does not show it: the cumulative average is only {gap_points} "
                    "points ahead of the running average.",
                ),
                (
                    "모멘텀 0.9에서는 누적 평균이 지수평균보다 테스트 정확도가 {gap_points}%p "
                    "높습니다.",
                    "이번 run에서는 드러나지 않았습니다: 누적 평균이 지수평균보다 "
                    "{gap_points}%p만 높습니다.",
                ),
            ),
        ),
    ),
)


# ---- 5. small batches: 1 (variance 0), 2-4 (noisy statistics), then large ----

_NOISY_AT, _LARGE_AT = 200, 1500

SMALL_BATCHES = Lesson(
    id="small-batches",
    values={
        "variants": ("plain", "bn"),
        "batch_size": 1,
        "steps": 3000,
        "probe_every": 25,
        "test_every": 200,
        "schedule": (
            {"step": _NOISY_AT, "batch_size": 4},
            {"step": _LARGE_AT, "batch_size": 256},
        ),
    },
    watch=Watch(("inference", "taps", "loss"), LAST, "norm_xhat"),
    text=_lesson_text(
        (
            "Small batches",
            "With one example a batch's variance is 0 and x − mean is 0, so BN cannot train "
            "and is skipped while plain trains on. At batch 4 BN trains, but its batch "
            "statistics are noisy: the test accuracy in train mode falls well below eval "
            "mode. At batch 256 the two agree.",
        ),
        (
            "작은 Batch",
            "Batch size가 1이면 분산이 0이고 x − 평균도 0이 되어 BN은 학습할 수 없으므로 "
            "건너뛰고, plain만 학습합니다. Batch 4에서는 BN이 학습하지만 Batch 통계가 "
            "흔들려서, train mode로 잰 테스트 정확도가 eval mode보다 크게 떨어집니다. Batch "
            "256에서는 둘이 같아집니다.",
        ),
    ),
    claims=(
        Claim(
            "event_present",
            {"kind": "skipped", "match": {"variants": ["bn"]}, "from_step": 0, "to_step": 0},
            threshold=1,
            text=_text(
                (
                    "At batch size 1 BN was skipped from step {step}: one example has no "
                    "variance to normalize with.",
                    "This run does not show it: no 'skipped' event for BN at step 0.",
                ),
                (
                    "Batch size 1에서 BN은 {step} step부터 건너뛰었습니다: 데이터 하나로는 "
                    "정규화할 분산이 없습니다.",
                    "이번 run에서는 드러나지 않았습니다: step 0에 BN의 'skipped' event가 없습니다.",
                ),
            ),
        ),
        Claim(
            "metric_gap",
            {
                "variant": "bn",
                "metric": "acc",
                "reference": "bn",
                "reference_metric": "acc_train_mode",
                "from_step": _NOISY_AT + 100,
                "to_step": _LARGE_AT - 1,
            },
            threshold=0.04,
            text=_text(
                (
                    "At batch 4 BN scores {gap_points} points lower in train mode than in "
                    "eval mode: batch statistics of 4 examples are noisy.",
                    "This run does not show it: at batch 4 train mode is only {gap_points} "
                    "points below eval mode.",
                ),
                (
                    "Batch 4에서 BN은 train mode가 eval mode보다 {gap_points}%p 낮습니다: "
                    "데이터 4개의 Batch 통계는 흔들립니다.",
                    "이번 run에서는 드러나지 않았습니다: Batch 4에서 train mode가 eval mode보다 "
                    "{gap_points}%p만 낮습니다.",
                ),
            ),
        ),
        Claim(
            "metric_gap",
            {
                "variant": "bn",
                "metric": "acc",
                "reference": "bn",
                "reference_metric": "acc_train_mode",
                "from_step": _LARGE_AT + 100,
                "to_step": _LARGE_AT + 500,
            },
            threshold=0.01,
            compare="<=",
            text=_text(
                (
                    "At batch 256 eval and train mode agree: eval mode minus train mode is "
                    "{gap_points} points.",
                    "This run does not show it: at batch 256 eval mode is still {gap_points} "
                    "points above train mode.",
                ),
                (
                    "Batch 256에서는 eval mode와 train mode가 거의 같습니다: 차이는 "
                    "{gap_points}%p입니다.",
                    "이번 run에서는 드러나지 않았습니다: Batch 256에서도 eval mode가 "
                    "{gap_points}%p 높습니다.",
                ),
            ),
        ),
    ),
)


# ---- 6. the alternatives at a small batch: LayerNorm, GroupNorm, WeightNorm, Batch Renorm ----

ALTERNATIVES = Lesson(
    id="alternatives",
    values={
        "variants": ("bn", "ln", "gn", "wn", "brn"),
        "batch_size": 2,
        "steps": 2000,
        "probe_every": 50,
        # Scoring a batch normalizer at batch 2 runs ~400 small batches: every 200th step
        # keeps it below the training's cost.
        "test_every": 200,
    },
    watch=Watch(("accuracy", "loss", "taps"), LAST, "norm_xhat"),
    text=_lesson_text(
        (
            "The alternatives at a small batch",
            "At batch size 2 BN's statistics come from two examples, so x̂ is just ±1 and "
            "the running averages are noisy. LayerNorm and GroupNorm normalize each example "
            "over its own units and WeightNorm reparametrizes the weights, so none of them "
            "depends on the batch; Batch Renorm corrects BN toward its running averages. "
            "Compare their test accuracy with BN's.",
        ),
        (
            "작은 Batch에서의 대안들",
            "Batch size 2에서 BN의 통계는 데이터 두 개로 구하므로 x̂는 ±1뿐이고 이동평균도 "
            "흔들립니다. Layer Normalization과 Group Normalization은 데이터 하나의 unit들로 "
            "정규화하고, Weight Normalization은 weight를 다시 표현하므로 Batch에 의존하지 "
            "않습니다. Batch Renorm은 BN을 이동평균 쪽으로 보정합니다. 테스트 정확도를 "
            "BN과 비교해 보세요.",
        ),
    ),
    claims=tuple(
        Claim(
            "metric_gap",
            {
                "variant": variant,
                "metric": "acc",
                "reference": "bn",
                "reference_metric": "acc",
                "from_step": 600,
                "to_step": 1200,
            },
            threshold=0.15,
            text=_text(
                (
                    f"At batch 2 {name} scores {{gap_points}} points above BN on the test set "
                    "(mean over {tests} tests).",
                    f"This run does not show it: {name} is only {{gap_points}} points above BN.",
                ),
                (
                    f"Batch 2에서 {name}의 테스트 정확도가 BN보다 {{gap_points}}%p 높습니다"
                    "(테스트 {tests}번 평균).",
                    f"이번 run에서는 드러나지 않았습니다: {name}가 BN보다 {{gap_points}}%p만 "
                    "높습니다.",
                ),
            ),
        )
        for variant, name in (("ln", "LayerNorm"), ("gn", "GroupNorm"))
    ),
)


LESSONS: tuple[Lesson, ...] = (
    MINI_BATCH,
    ICS,
    SCALE_SHIFT,
    TRAIN_INFERENCE,
    SMALL_BATCHES,
    ALTERNATIVES,
)


def lesson_table() -> list[dict[str, Json]]:
    """The registry as plain data, in the order of the notes (GET /api/rules)."""
    return [lesson.to_json() for lesson in LESSONS]
