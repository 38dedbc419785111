"""The reports' words in the page's two languages: a report downloaded from the Korean page
reads in Korean. Numbers, variant names and field names stay as they are."""

from __future__ import annotations

from typing import Literal

Language = Literal["en", "ko"]
LANGUAGES: tuple[Language, ...] = ("en", "ko")

_EN = {
    "run": "covshift run",
    "intro": "{n} variants trained in lockstep on {dataset} ({train} training, {test} test "
    "examples); {config}",
    "intro.watched": "{n} models of your own, watched with covshift.watch ({name}); frames "
    "every {every} steps.",
    "markers": "Dashed vertical lines mark changes of a setting (see Settings over time).",
    "band.title": "{variant} ({label}): last layer's activation input, 15/50/85th percentiles "
    "of each batch, all units pooled",
    "band.legend": "15–85th percentile band",
    "band.unit": "one typical unit, 15/50/85% (same held-out examples)",
    "median": "median",
    "step": "step",
    "act_input": "activation input",
    "loss.title": "training loss (this batch)",
    "acc.title": "test accuracy: eval mode (solid), train mode (dash), population stats (dot)",
    "w1.title": "ICS (a): W1 of the last layer's input to its first (solid) and previous frame "
    "(dot)",
    "grad_diff.title": "ICS (b): ||G - G'|| of the output layer (Santurkar et al. Def. 2.1)",
    "grad_cos.title": "ICS (b): cos(G, G') of the output layer",
    "loss_range.title": "landscape: loss range along the gradient",
    "grad_predictiveness.title": "landscape: gradient predictiveness max ||g - g'||",
    "beta_smoothness.title": "landscape: effective β-smoothness",
    "loss": "loss",
    "accuracy": "accuracy",
    "cosine": "cosine",
    "loss range": "loss range",
    "series.loss": "loss",
    "series.test_acc": "test accuracy (eval mode)",
    "series.test_acc_train_mode": "test accuracy (train mode)",
    "series.test_acc_population": "test accuracy (population statistics)",
    "series.w1_start": "W1 to the first frame",
    "series.w1": "W1 to the previous frame",
    "series.grad_diff": "||G - G'||",
    "series.grad_cos": "cos(G, G')",
    "series.loss_range": "loss range",
    "series.grad_predictiveness": "gradient predictiveness",
    "series.beta_smoothness": "β-smoothness",
    "final": "Final numbers",
    "col.variant": "variant",
    "col.train_loss": "train loss",
    "col.train_acc": "train acc",
    "col.test_acc": "test acc",
    "col.acc_train_mode": "acc train mode",
    "col.acc_population": "acc population",
    "col.band_start": "act. input 15/50/85 at start",
    "col.band_end": "at end",
    "col.w1_start": "W1 to start (end)",
    "settings": "Settings over time",
    "col.from": "from step",
    "col.to": "to step",
    "col.lr": "learning rate",
    "col.batch_size": "batch size",
    "col.bn_momentum": "BN momentum",
    "col.cause": "set by",
    "cause.start": "the run's start",
    "cause.change": "a change",
    "cause.schedule": "the lesson's schedule",
    "end": "end",
    "events": "Events",
    "col.step": "step",
    "col.kind": "kind",
    "col.what": "what happened",
    "setting.lr": "learning rate",
    "setting.batch_size": "batch size",
    "setting.bn_momentum": "BN momentum",
    "cumulative": "cumulative",
    "event.state": "run {state}",
    "event.skipped": "{names} skipped: {reason}",
    "event.diverged": "{variant} diverged: {reason}",
    "footer": "Written by covshift from its wire records (docs/protocol.md).",
}

_KO = {
    "run": "covshift 실행",
    "intro": "변형 {n}개를 {dataset}에서 같은 순서로 나란히 학습했습니다(학습 {train}개, 테스트 "
    "{test}개); {config}",
    "intro.watched": "covshift.watch로 관찰한 사용자 모델 {n}개({name}); {every} 스텝마다 프레임.",
    "markers": "세로 점선은 설정이 바뀐 곳입니다(아래 '시간에 따른 설정' 참고).",
    "band.title": "{variant} ({label}): 마지막 층의 활성화 입력, 배치마다 15/50/85번째 백분위수, "
    "모든 유닛을 합쳐서",
    "band.legend": "15–85번째 백분위수 띠",
    "band.unit": "대표 유닛 하나, 15/50/85% (같은 검증 샘플)",
    "median": "중앙값",
    "step": "스텝",
    "act_input": "활성화 입력",
    "loss.title": "학습 손실(이 배치)",
    "acc.title": "테스트 정확도: eval 모드(실선), train 모드(파선), 모집단 통계(점선)",
    "w1.title": "ICS (a): 마지막 층 입력의 첫 프레임(실선)·이전 프레임(점선) 대비 W1",
    "grad_diff.title": "ICS (b): 출력층의 ||G - G'|| (Santurkar 외, 정의 2.1)",
    "grad_cos.title": "ICS (b): 출력층의 cos(G, G')",
    "loss_range.title": "손실 지형: 그래디언트 방향의 손실 범위",
    "grad_predictiveness.title": "손실 지형: 그래디언트 예측성 max ||g - g'||",
    "beta_smoothness.title": "손실 지형: 유효 β-평활도",
    "loss": "손실",
    "accuracy": "정확도",
    "cosine": "코사인",
    "loss range": "손실 범위",
    "series.loss": "손실",
    "series.test_acc": "테스트 정확도(eval 모드)",
    "series.test_acc_train_mode": "테스트 정확도(train 모드)",
    "series.test_acc_population": "테스트 정확도(모집단 통계)",
    "series.w1_start": "첫 프레임 대비 W1",
    "series.w1": "이전 프레임 대비 W1",
    "series.grad_diff": "||G - G'||",
    "series.grad_cos": "cos(G, G')",
    "series.loss_range": "손실 범위",
    "series.grad_predictiveness": "그래디언트 예측성",
    "series.beta_smoothness": "β-평활도",
    "final": "최종 수치",
    "col.variant": "변형",
    "col.train_loss": "학습 손실",
    "col.train_acc": "학습 정확도",
    "col.test_acc": "테스트 정확도",
    "col.acc_train_mode": "train 모드 정확도",
    "col.acc_population": "모집단 통계 정확도",
    "col.band_start": "시작 시 활성화 입력 15/50/85",
    "col.band_end": "끝",
    "col.w1_start": "시작 대비 W1 (끝)",
    "settings": "시간에 따른 설정",
    "col.from": "시작 스텝",
    "col.to": "끝 스텝",
    "col.lr": "학습률",
    "col.batch_size": "배치 크기",
    "col.bn_momentum": "BN 모멘텀",
    "col.cause": "바뀐 이유",
    "cause.start": "실행 시작",
    "cause.change": "사용자 변경",
    "cause.schedule": "레슨 일정",
    "end": "끝",
    "events": "이벤트",
    "col.step": "스텝",
    "col.kind": "종류",
    "col.what": "내용",
    "setting.lr": "학습률",
    "setting.batch_size": "배치 크기",
    "setting.bn_momentum": "BN 모멘텀",
    "cumulative": "누적 평균",
    "event.state": "실행 {state}",
    "event.skipped": "{names} 건너뜀: {reason}",
    "event.diverged": "{variant} 발산: {reason}",
    "footer": "covshift가 와이어 레코드(docs/protocol.md)로 작성했습니다.",
}

_CATALOGUES: dict[str, dict[str, str]] = {"en": _EN, "ko": _KO}


class Text:
    """The words of one language; a key missing there falls back to English."""

    def __init__(self, language: str = "en") -> None:
        self.language = language if language in _CATALOGUES else "en"
        self._words = _CATALOGUES[self.language]

    def __call__(self, key: str, **values: object) -> str:
        template = self._words.get(key) or _EN[key]
        return template.format(**values) if values else template
