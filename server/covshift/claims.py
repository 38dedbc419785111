"""A lesson's claims checked on a run's records: each kind's formula, torch-free.

A claim is data (a kind, its parameters, a threshold and a comparison); `evaluate`
computes the kind's numbers from the hello and the frame and event records, exactly as
docs/lessons.md states them, so the page can recompute the same numbers in JS. A
claim is judged only once its step range is complete (a frame at or past `to_step`
has arrived) and holds enough points; before that `holds` is None.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .wire import Json, tap_of

ClaimKind = Literal[
    "unit_drift_ratio", "metric_gap", "loss_noise", "event_present", "xhat_standard"
]
Compare = Literal[">=", "<="]

# The numbers each kind reports (ClaimResult.numbers, besides "value"): what a claim's text
# may name in {placeholders}.
NUMBERS: dict[str, tuple[str, ...]] = {
    "unit_drift_ratio": ("ratio", "moved", "reference_moved"),
    "metric_gap": ("gap", "gap_points", "tests"),
    "loss_noise": ("ratio", "before", "after"),
    "event_present": ("count", "step"),  # step: the first match's, absent without one
    "xhat_standard": ("xhat_mean", "xhat_std", "out_mean", "out_std", "out_moved"),
}

# Fewer points than this in a window say nothing about movement or spread.
MIN_FRAMES = 2
MIN_TESTS = 2
MIN_LOSS_FRAMES = 3  # two frame-to-frame differences at least


@dataclass(frozen=True)
class ClaimText:
    """One language's sentences; {placeholders} name entries of ClaimResult.numbers."""

    holds: str
    fails: str


@dataclass(frozen=True)
class Claim:
    """A check on a run's records: `value` of `kind` compared with `threshold`."""

    kind: ClaimKind
    params: Mapping[str, Json]
    threshold: float
    text: Mapping[str, ClaimText]  # by language: "en", "ko"
    compare: Compare = ">="

    def to_json(self) -> dict[str, Json]:
        return {
            "kind": self.kind,
            "params": dict(self.params),
            "threshold": self.threshold,
            "compare": self.compare,
            "text": {lang: {"holds": t.holds, "fails": t.fails} for lang, t in self.text.items()},
        }


@dataclass(frozen=True)
class ClaimResult:
    """holds: True or False once judged, None while the records cannot decide it yet."""

    holds: bool | None
    numbers: dict[str, float] = field(default_factory=dict)


def evaluate(
    claim: Claim, hello: Mapping[str, Json], records: Iterable[Mapping[str, Json]]
) -> ClaimResult:
    """Judge `claim` on a run: its hello and its frame and event records, in order."""
    frames = [r for r in records if r.get("type") in ("frame", "event")]
    return _KINDS[claim.kind](claim, hello, frames)


def claim_text(claim: Claim, result: ClaimResult, lang: str = "en") -> str | None:
    """The sentence the result calls for, its numbers filled in; None while undecided."""
    if result.holds is None:
        return None
    words = claim.text[lang]
    template = words.holds if result.holds else words.fails
    return template.format(**{k: format_number(v) for k, v in result.numbers.items()})


def format_number(value: float) -> str:
    """|x| >= 100: an integer; otherwise 3 significant digits, at most 3 decimals
    (JS: String(Number(Number(x.toPrecision(3)).toFixed(3))))."""
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if abs(value) >= 100:
        return str(round(value))
    short = round(float(f"{value:.3g}"), 3)
    return str(int(short)) if short.is_integer() else str(short)


# ---- the kinds ----


def _unit_drift_ratio(
    claim: Claim, hello: Mapping[str, Json], records: list[Mapping[str, Json]]
) -> ClaimResult:
    p = claim.params
    if not _complete(records, p["to_step"]):
        return ClaimResult(None)
    frames = _frames_in(records, p["from_step"], p["to_step"])
    drift = unit_drift(frames, p["variant"], p["reference"], p["layer"])
    if drift is None:
        return ClaimResult(None)
    moved, reference = drift
    ratio = moved / reference if reference > 0 else math.inf
    return _judge(claim, ratio, {"ratio": ratio, "moved": moved, "reference_moved": reference})


def unit_drift(
    frames: list[Mapping[str, Json]], variant: str, reference: str, layer: int
) -> tuple[float, float] | None:
    """How far two variants' units moved on the fixed held-out set, as the page's unitDrift:
    the sums of drift_fixed.unit_median (a frame's median over units of each unit's W1 to the
    frame before) over the frames where both have it; None with fewer than two such frames."""
    moved = reference_moved = 0.0
    count = 0
    for frame in frames:
        a = _unit_median(frame, variant, layer)
        b = _unit_median(frame, reference, layer)
        if a is None or b is None:
            continue
        moved += a
        reference_moved += b
        count += 1
    return (moved, reference_moved) if count >= MIN_FRAMES else None


def _unit_median(frame: Mapping[str, Json], variant: str, layer: int) -> float | None:
    layers = (frame["variants"].get(variant) or {}).get("layers") or []
    fixed = (layers[layer] or {}).get("drift_fixed") if layer < len(layers) else None
    value = fixed.get("unit_median") if fixed else None
    return float(value) if isinstance(value, int | float) and _finite(value) else None


def _metric_gap(
    claim: Claim, hello: Mapping[str, Json], records: list[Mapping[str, Json]]
) -> ClaimResult:
    p = claim.params
    if not _complete(records, p["to_step"]):
        return ClaimResult(None)
    gaps = []
    for frame in _frames_in(records, p["from_step"], p["to_step"]):
        a = _test(frame, p["variant"], p["metric"])
        b = _test(frame, p["reference"], p["reference_metric"])
        if a is not None and b is not None:
            gaps.append(a - b)
    if len(gaps) < MIN_TESTS:
        return ClaimResult(None)
    gap = sum(gaps) / len(gaps)
    return _judge(claim, gap, {"gap": gap, "gap_points": 100 * gap, "tests": len(gaps)})


def _loss_noise(
    claim: Claim, hello: Mapping[str, Json], records: list[Mapping[str, Json]]
) -> ClaimResult:
    p = claim.params
    if not _complete(records, p["to_step"]):
        return ClaimResult(None)
    before = _loss_spread(_frames_in(records, p["from_step"], p["change_step"] - 1), p["variant"])
    after = _loss_spread(_frames_in(records, p["change_step"], p["to_step"]), p["variant"])
    if before is None or after is None:
        return ClaimResult(None)
    ratio = after / before if before > 0 else math.inf
    return _judge(claim, ratio, {"ratio": ratio, "before": before, "after": after})


def _loss_spread(frames: list[Mapping[str, Json]], variant: str) -> float | None:
    """Mean |Δ loss| between consecutive frames with a finite training loss: the batch-to-batch
    noise, with little of the slow downward trend a standard deviation would count."""
    values = [(f["variants"].get(variant) or {}).get("loss") for f in frames]
    losses = [float(v) for v in values if isinstance(v, int | float) and _finite(v)]
    if len(losses) < MIN_LOSS_FRAMES:
        return None
    return sum(abs(b - a) for a, b in itertools.pairwise(losses)) / (len(losses) - 1)


def _event_present(
    claim: Claim, hello: Mapping[str, Json], records: list[Mapping[str, Json]]
) -> ClaimResult:
    p = claim.params
    wanted: Mapping[str, Json] = p.get("match", {})
    found = [
        r
        for r in records
        if r.get("type") == "event"
        and r.get("kind") == p["kind"]
        and p["from_step"] <= r.get("step", -1) <= p["to_step"]
        and all(_matches(r.get(k), v) for k, v in wanted.items())
    ]
    # An event that happened cannot un-happen: it decides the claim as soon as it is seen.
    if not found and not _complete(records, p["to_step"]):
        return ClaimResult(None)
    numbers = {"count": float(len(found))}
    if found:
        numbers["step"] = float(found[0]["step"])
    return _judge(claim, len(found), numbers)


def _matches(actual: Json, wanted: Json) -> bool:
    """Equal, or for a list every wanted item present in the event's list."""
    if isinstance(wanted, list):
        return isinstance(actual, list) and all(item in actual for item in wanted)
    return bool(actual == wanted)


def _xhat_standard(
    claim: Claim, hello: Mapping[str, Json], records: list[Mapping[str, Json]]
) -> ClaimResult:
    p = claim.params
    if not _complete(records, p["to_step"]):
        return ClaimResult(None)
    moments = []
    for frame in _frames_in(records, p["from_step"], p["to_step"]):
        xhat = _tap(frame, p["variant"], p["layer"], "norm_xhat")
        out = _tap(frame, p["variant"], p["layer"], "norm_out")
        if xhat and out and all(_finite(s[k]) for s in (xhat, out) for k in ("mean", "std")):
            moments.append((xhat["mean"], xhat["std"], out["mean"], out["std"]))
    if len(moments) < MIN_FRAMES:
        return ClaimResult(None)
    xhat_mean = max(abs(m[0]) for m in moments)
    xhat_std = max(abs(m[1] - 1) for m in moments)
    last = moments[-1]
    out_moved = abs(last[2] - last[0]) + abs(last[3] - last[1])
    numbers = {
        "xhat_mean": xhat_mean,
        "xhat_std": xhat_std,
        "out_mean": last[2],
        "out_std": last[3],
        "out_moved": out_moved,
    }
    standard = xhat_mean <= p["mean_tol"] and xhat_std <= p["std_tol"]
    return _judge(claim, out_moved, numbers, standard)


_KINDS: dict[str, Callable[[Claim, Mapping[str, Json], list[Mapping[str, Json]]], ClaimResult]] = {
    "unit_drift_ratio": _unit_drift_ratio,
    "metric_gap": _metric_gap,
    "loss_noise": _loss_noise,
    "event_present": _event_present,
    "xhat_standard": _xhat_standard,
}


# ---- shared pieces ----


def _judge(claim: Claim, value: float, numbers: dict[str, float], also: bool = True) -> ClaimResult:
    passed = value >= claim.threshold if claim.compare == ">=" else value <= claim.threshold
    return ClaimResult(passed and also, {"value": float(value), **numbers})


def _complete(records: list[Mapping[str, Json]], to_step: int) -> bool:
    """The range has been run through: a frame at or past its last step arrived."""
    return any(r.get("type") == "frame" and r["step"] >= to_step for r in records)


def _frames_in(
    records: list[Mapping[str, Json]], first: int, last: int
) -> list[Mapping[str, Json]]:
    return [r for r in records if r.get("type") == "frame" and first <= r["step"] <= last]


def _tap(frame: Mapping[str, Json], variant: str, layer: int, tap: str) -> dict[str, Any] | None:
    layers = (frame["variants"].get(variant) or {}).get("layers") or []
    if not 0 <= layer < len(layers):
        return None
    return tap_of(layers[layer], tap)


def _test(frame: Mapping[str, Json], variant: str, metric: str) -> float | None:
    test = (frame["variants"].get(variant) or {}).get("test")
    value = test.get(metric) if test else None
    return float(value) if isinstance(value, int | float) and _finite(value) else None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
