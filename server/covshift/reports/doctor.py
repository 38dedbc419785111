"""The BN doctor: findings about a stored run's normalization, read from its hello and records.

Each check reads only the wire records (docs/protocol.md), so it serves a headless run's
frames.jsonl and the server's run log alike, live or finished. Every check has its threshold
named below with the reason for its value; docs/doctor.md says how to read the output.
Torch-free: NumPy only for the per-channel arithmetic.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from covshift.errors import CovshiftError
from covshift.findings import Finding
from covshift.wire import MISFIT, Json

log = logging.getLogger(__name__)

Frame = tuple[int, int, list[dict[str, Any]]]  # (step, batch size, the variant's layers)
Array = np.ndarray[Any, np.dtype[np.float64]]

# Test accuracy in eval mode against train mode, in accuracy (0.03 = 3 points). Both score
# the same test examples, so the paired difference is far less noisy than two independent
# scores: on digits (360 test examples) a healthy BN at batch 60 differs by under 1 point;
# 3 points is 11 examples, and past that the two statistics plainly disagree.
TRAIN_EVAL_GAP = 0.03
# Population statistics (Algorithm 2) over running averages: smaller than the train/eval
# threshold because both scores use eval mode on the same examples and differ only in the
# statistics, so 2 points (7 digits examples) already says the running averages are off.
POPULATION_GAIN = 0.02
# Frames that count as "recent": enough to average or spread batch statistics over (five
# batches), few enough to see the network as it is now (the default probe_every of 50 makes
# it the last 250 steps).
RECENT_FRAMES = 5
# Fewer recent frames than this and the per-channel checks stay silent: a spread of two
# numbers says little.
MIN_FRAMES = 3
# A running mean further than this from the recent batch means, in the channel's standard
# deviations, moves every normalized value of the channel by that much: half a standard
# deviation is as large as the shift that Ioffe & Szegedy's Figure 1 shows building up.
RUNNING_MEAN_SHIFT = 0.5
# ...and further than this many times the distance sampling alone explains (independent
# examples: the mean of K batch means and an EMA of batch means each wander ~1/sqrt(B)).
SHIFT_NOISE_MULTIPLE = 3.0
# The channels a finding lists, worst first.
WORST_CHANNELS = 5
# Batch-statistic normalizers below this batch size: the batch mean wanders by 1/sqrt(B) of
# a channel's standard deviation, a quarter at 16, and Wu & He (2018, Table 2/Figure 1) see
# BatchNorm's error rise steeply below 16 while GroupNorm's stays flat.
SMALL_BATCH = 16
# ReLU units that are zero for every example of the batch get no gradient at all: a quarter
# of a layer gone is a quarter of its width lost. Flagged only when also well above the share
# chance gives at a small batch (a unit active half the time is all-zero with 0.5**B).
DEAD_UNITS = 0.25
# Sigmoid/tanh outputs within 0.01 of a bound pass on under 4% of the gradient (sigmoid'
# < 0.0099): with a quarter of them there, the layer learns mostly through the rest.
SATURATED = 0.25


class RunUnreadable(CovshiftError):
    """A run's frames.jsonl is missing or damaged: the doctor has nothing to read."""


def read_run(run_dir: Path) -> tuple[dict[str, Json], Iterator[dict[str, Json]]]:
    """The hello of RUN_DIR/frames.jsonl (or of that file itself) and an iterator over the
    records after it, read as iterated so memory stays bounded on a long run. A last line
    without its newline is a record still being written (a live run) and is left out; any
    other line that is not a JSON object is damage, raised as it is reached."""
    path = run_dir if run_dir.is_file() else run_dir / "frames.jsonl"
    try:
        file = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise RunUnreadable(
            f"{path}: no such file (a run folder holds the frames.jsonl that "
            "`covshift run --out` or the server's log dir writes)"
        ) from None
    except OSError as exc:
        raise RunUnreadable(f"{path}: cannot be read: {exc}") from None
    records = _records(path, file)
    first = next(records, None)
    if first is None:
        raise RunUnreadable(f"{path}: empty, no hello record (the run has not started)")
    number, hello = first
    if hello.get("type") != "hello" or not isinstance(hello.get("variants"), dict):
        raise RunUnreadable(f"{path}, line {number}: the first record is not a hello")
    return hello, (record for _, record in records)


def _records(path: Path, file: TextIO) -> Iterator[tuple[int, dict[str, Json]]]:
    number = 0
    try:
        with file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    if not line.endswith("\n"):
                        return  # still being written
                    raise RunUnreadable(f"{path}, line {number}: damaged, not JSON") from None
                if not isinstance(record, dict):
                    raise RunUnreadable(f"{path}, line {number}: damaged, not a JSON object")
                yield number, record
    except (OSError, UnicodeDecodeError) as exc:
        raise RunUnreadable(f"{path}, near line {number + 1}: cannot be read: {exc}") from None


@dataclass
class _Variant:
    """What the checks need of one variant, gathered as the records stream by."""

    recent: deque[Frame]
    test: tuple[int, int, dict[str, Any]] | None = None  # the last scored test
    skipped: list[int] = field(default_factory=list)  # steps it sat out
    skip_reason: str = ""
    diverged_at: int | None = None
    diverge_reason: str = ""


def _gather(hello: dict[str, Json], records: Iterable[dict[str, Json]]) -> dict[str, _Variant]:
    tracks = {v: _Variant(deque(maxlen=RECENT_FRAMES)) for v in hello["variants"]}
    misfits = 0
    for record in records:
        try:
            if record["type"] == "event" and record["kind"] == "skipped":
                for name in record["variants"]:
                    tracks[name].skip_reason = str(record.get("reason", ""))
            elif record["type"] == "event" and record["kind"] == "diverged":
                tracks[record["variant"]].diverge_reason = str(record.get("reason", ""))
            elif record["type"] == "frame":
                step, batch_size = int(record["step"]), int(record["batch_size"])
                for name, entry in record["variants"].items():
                    if name in tracks:  # one the hello does not name is not ours to judge
                        _take(tracks[name], step, batch_size, entry)
        except MISFIT:
            misfits += 1
    if misfits:
        log.warning("%d damaged records left out of the diagnosis", misfits)
    return tracks


def _take(track: _Variant, step: int, batch_size: int, entry: dict[str, Any]) -> None:
    status = entry["status"]
    if status == "skipped":
        track.skipped.append(step)
    elif status == "diverged":
        track.diverged_at = int(entry.get("diverged_at", step))
    elif "layers" in entry:
        track.recent.append((step, batch_size, entry["layers"]))
    test = entry.get("test")
    if test and test.get("acc") is not None:
        track.test = (step, batch_size, test)


def diagnose(hello: dict[str, Json], records: Iterable[dict[str, Json]]) -> list[Finding]:
    """Every finding about the run, by variant in the hello's order, run-wide ones first and
    then by layer. An empty list: no problems found."""
    config = hello.get("config") or {}
    findings: list[Finding] = []
    for name, track in _gather(hello, records).items():
        try:
            findings += _variant_findings(name, track, hello["variants"][name], config)
        except MISFIT:
            log.warning("%s: its records are damaged; no diagnosis for it", name)
    return findings


def _variant_findings(
    name: str, track: _Variant, info: dict[str, Any], config: dict[str, Any]
) -> list[Finding]:
    findings = _sat_out(name, track)
    if track.test is not None:
        findings += _train_eval_gap(name, track.test)
        findings += _population(name, track.test, config)
    frames = list(track.recent)
    if len(frames) >= MIN_FRAMES:
        if info.get("batch_stats"):
            findings += _batch_noise(name, frames, config)
        findings += _running_mean_off(name, frames, config)
    return findings + _dead_or_saturated(name, frames)


def _points(accuracy: float) -> str:
    return f"{100 * accuracy:.1f}"


def _sat_out(name: str, track: _Variant) -> list[Finding]:
    found = []
    if track.skipped:
        found.append(
            Finding(
                variant=name,
                layer=None,
                code="skipped",
                severity="info",
                title="skipped",
                evidence=(
                    f"{name} sat out {len(track.skipped)} probed steps from step {track.skipped[0]}"
                    + (f": {track.skip_reason}" if track.skip_reason else ".")
                ),
                fix=(
                    "Train batch-statistic normalizers at batch size 2 or more; at batch size 1 "
                    "use a per-example normalizer (nn.LayerNorm, nn.GroupNorm)."
                ),
                numbers={"frames": len(track.skipped), "first_step": track.skipped[0]},
            )
        )
    if track.diverged_at is not None:
        found.append(
            Finding(
                variant=name,
                layer=None,
                code="diverged",
                severity="info",
                title="diverged",
                evidence=(
                    f"{name}'s training loss became non-finite at step {track.diverged_at}"
                    + (f" ({track.diverge_reason})" if track.diverge_reason else "")
                    + "; it stopped training there."
                ),
                fix=(
                    "Lower the learning rate, or normalize before the activation, which keeps "
                    "larger learning rates stable (Ioffe & Szegedy 2015, Sec. 3.3)."
                ),
                numbers={"step": track.diverged_at},
            )
        )
    return found


def _train_eval_gap(name: str, test_at: tuple[int, int, dict[str, Any]]) -> list[Finding]:
    step, batch_size, test = test_at
    acc, train_mode = test["acc"], test.get("acc_train_mode")
    if train_mode is None or abs(acc - train_mode) <= TRAIN_EVAL_GAP:
        return []
    size = max(batch_size, 2)
    numbers = {
        "step": step,
        "acc": acc,
        "acc_train_mode": train_mode,
        "gap_points": 100 * (acc - train_mode),
        "batch_size": size,
    }
    scores = (
        f"{name} scores {_points(acc)}% on the test split in eval mode "
        f"(running statistics) and {_points(train_mode)}% left in train mode (each test "
        f"batch of {size} normalized by its own statistics)"
    )
    if acc > train_mode:
        return [
            Finding(
                variant=name,
                layer=None,
                code="train_eval_gap",
                severity="warn",
                title=f"forgetting model.eval() costs {_points(acc - train_mode)} points",
                evidence=(
                    f"At step {step} {scores}: forgetting model.eval() costs "
                    f"{_points(acc - train_mode)} points here, and more the smaller the batch."
                ),
                fix=(
                    "Call model.eval() before evaluating and model.train() after: torch.no_grad() "
                    "alone leaves BatchNorm normalizing with each batch's statistics."
                ),
                numbers=numbers,
            )
        ]
    return [
        Finding(
            variant=name,
            layer=None,
            code="train_eval_gap",
            severity="warn",
            title=f"running statistics lag the batches by {_points(train_mode - acc)} points",
            evidence=(
                f"At step {step} {scores}: the batches' own statistics normalize better "
                "than the running averages, so those are stale (or noisy) for the network as "
                "it is now."
            ),
            fix=(
                "Recompute the running statistics before evaluating with "
                "torch.optim.swa_utils.update_bn(train_loader, model), then evaluate in eval "
                "mode again."
            ),
            numbers=numbers,
        )
    ]


def _population(
    name: str, test_at: tuple[int, int, dict[str, Any]], config: dict[str, Any]
) -> list[Finding]:
    step, _, test = test_at
    acc, population = test["acc"], test.get("acc_population")
    if population is None or population - acc <= POPULATION_GAIN:
        return []
    momentum = config.get("bn_momentum")
    averaging = (
        "the equal-weight average of every batch so far (bn_momentum null)"
        if momentum is None
        else f"an exponential average of about the last {(2 - momentum) / momentum:.0f} "
        f"batches (bn_momentum {momentum:g})"
    )
    return [
        Finding(
            variant=name,
            layer=None,
            code="stale_running_stats",
            severity="warn",
            title=f"population statistics beat the running ones by {_points(population - acc)}",
            evidence=(
                f"At step {step} recomputing {name}'s statistics over the training data "
                f"(Algorithm 2) raises test accuracy from {_points(acc)}% to "
                f"{_points(population)}%: the running statistics, {averaging}, are stale for a "
                "network that still drifts, or too few steps have been taken."
            ),
            fix=(
                "Before evaluating, run torch.optim.swa_utils.update_bn(train_loader, model) and "
                "evaluate again; while training, a larger PyTorch momentum (the newest batch's "
                "weight) follows a drifting network faster."
            ),
            numbers={
                "step": step,
                "acc": acc,
                "acc_population": population,
                "gain_points": 100 * (population - acc),
                "bn_momentum": momentum,
            },
        )
    ]


def _bn_series(frames: list[Frame], layer: int, key: str) -> Array | None:
    """frames × channels of one bn statistic (null, a non-finite value, reads as NaN); None
    when a frame has no bn entry for the layer."""
    rows = []
    for _, _, layers in frames:
        bn = layers[layer].get("bn") if layer < len(layers) else None
        if not bn or bn.get(key) is None:
            return None
        rows.append(bn[key])
    return np.asarray(rows, dtype=np.float64)


def running_mean_shift(frames: list[Frame], layer: int, eps: float) -> Array | None:
    """Per channel |running_mean − mean of the frames' batch_mean| / sqrt(running_var + eps),
    the running statistics taken from the last frame."""
    batch_mean = _bn_series(frames, layer, "batch_mean")
    running_mean = _bn_series(frames[-1:], layer, "running_mean")
    running_var = _bn_series(frames[-1:], layer, "running_var")
    if batch_mean is None or running_mean is None or running_var is None:
        return None
    shift: Array = np.abs(running_mean[0] - batch_mean.mean(axis=0)) / np.sqrt(running_var[0] + eps)
    return shift


def _running_mean_off(name: str, frames: list[Frame], config: dict[str, Any]) -> list[Finding]:
    eps = float(config.get("bn_eps", 1e-5))
    momentum = config.get("bn_momentum")
    batch_size = max(frames[-1][1], 2)
    # Sampling alone: the mean of K batch means has variance 1/(K·B), an EMA of batch means
    # m/((2−m)·B) (none for the cumulative average), in units of the channel's variance.
    ema = 0.0 if momentum is None else momentum / (2 - momentum)
    noise = math.sqrt((1 / len(frames) + ema) / batch_size)
    threshold = max(RUNNING_MEAN_SHIFT, SHIFT_NOISE_MULTIPLE * noise)
    found = []
    for layer in range(len(frames[-1][2])):
        shift = running_mean_shift(frames, layer, eps)
        if shift is None:
            continue
        over = np.flatnonzero(np.nan_to_num(shift, nan=0.0) > threshold)
        if not over.size:
            continue
        worst = over[np.argsort(-shift[over], kind="stable")][:WORST_CHANNELS]
        listed = ", ".join(f"{c} ({shift[c]:.2f})" for c in worst)
        found.append(
            Finding(
                variant=name,
                layer=layer,
                code="running_mean_off",
                severity="warn",
                title=f"running mean off the recent batches in {over.size} channels",
                evidence=(
                    f"In {over.size} of {shift.size} channels the running mean lies more than "
                    f"{threshold:.2f} standard deviations from the mean of the last "
                    f"{len(frames)} frames' batch means (worst channels: {listed}); sampling "
                    f"alone explains about {noise:.2f}."
                ),
                fix=(
                    "Recompute the running statistics with "
                    "torch.optim.swa_utils.update_bn(train_loader, model) before evaluating; if "
                    "it recurs, the network drifts faster than the running average follows."
                ),
                numbers={
                    "channels_over": int(over.size),
                    "channels": int(shift.size),
                    "threshold": threshold,
                    "sampling_noise": noise,
                    "worst_channels": [int(c) for c in worst],
                    "worst_shifts": [float(shift[c]) for c in worst],
                    "frames": len(frames),
                },
            )
        )
    return found


def batch_mean_noise(frames: list[Frame], layer: int) -> Array | None:
    """Per channel the std over frames of batch_mean (ddof 1) over sqrt(mean batch_var): how far
    a batch's mean wanders, in the channel's standard deviations."""
    batch_mean = _bn_series(frames, layer, "batch_mean")
    batch_var = _bn_series(frames, layer, "batch_var")
    if batch_mean is None or batch_var is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant channel: NaN, skipped
        noise: Array = batch_mean.std(axis=0, ddof=1) / np.sqrt(batch_var.mean(axis=0))
    return noise


def normalizing_batch(frames: list[Frame], config: dict[str, Any]) -> int:
    """How many examples each normalization sees at the last frame's batch size B: B, or for
    ghost batches (a bn entry with "ghost_mean") the smallest of max(1, B // g) near-equal
    ghost batches."""
    batch_size = frames[-1][1]
    layers = frames[-1][2]
    if layers and (layers[0].get("bn") or {}).get("ghost_mean") is not None:
        return batch_size // max(1, batch_size // int(config.get("ghost_batch_size", 1)))
    return batch_size


def _batch_noise(name: str, frames: list[Frame], config: dict[str, Any]) -> list[Finding]:
    size = normalizing_batch(frames, config)
    if size >= SMALL_BATCH:
        return []
    per_layer = []
    for layer in range(len(frames[-1][2])):
        noise = batch_mean_noise(frames, layer)
        per_layer.append(float("nan") if noise is None else float(np.nanmedian(noise)))
    reference = 1 / math.sqrt(size)
    shown = ", ".join(f"{n:.2f}" for n in per_layer)
    ghost = f" (ghost batches of {size})" if size != frames[-1][1] else ""
    return [
        Finding(
            variant=name,
            layer=None,
            code="noisy_batch_stats",
            severity="warn",
            title=f"batch statistics too noisy at {size} examples per normalization",
            evidence=(
                f"At batch size {frames[-1][1]}{ghost} each channel is normalized with the mean "
                f"and variance of {size} examples; over the last {len(frames)} frames a "
                f"channel's batch mean wandered by a median {shown} of its standard deviation "
                f"(per hidden layer), and independent examples give 1/sqrt({size}) = "
                f"{reference:.2f}: each batch normalizes with statistics that are largely noise."
            ),
            fix=(
                f"Normalize over {SMALL_BATCH} or more examples (a larger batch), or per "
                "example (nn.GroupNorm, nn.LayerNorm: variants gn, ln), or use Batch Renorm "
                "(brn), which corrects each batch toward the running statistics."
            ),
            numbers={
                "batch_size": frames[-1][1],
                "normalizing_batch": size,
                "reference": reference,
                "noise_by_layer": per_layer,
                "frames": len(frames),
            },
        )
    ]


def _dead_or_saturated(name: str, frames: list[Frame]) -> list[Finding]:
    found = []
    batch_size = frames[-1][1] if frames else 0
    depth = min((len(layers) for _, _, layers in frames), default=0)
    for layer in range(depth):
        dead = [_share(layers[layer], "dead_units") for _, _, layers in frames]
        saturated = [_share(layers[layer], "saturated") for _, _, layers in frames]
        if None not in dead:
            share = math.fsum(d for d in dead if d is not None) / len(dead)
            chance = 0.5**batch_size
            if share > max(DEAD_UNITS, 2 * chance):
                found.append(_dead(name, layer, share, chance, len(dead)))
        elif None not in saturated:
            share = math.fsum(s for s in saturated if s is not None) / len(saturated)
            if share > SATURATED:
                found.append(_saturated(name, layer, share, len(saturated)))
    return found


def _share(layer: dict[str, Any], key: str) -> float | None:
    value = layer.get(key)
    return float(value) if isinstance(value, int | float) else None


def _dead(name: str, layer: int, share: float, chance: float, frames: int) -> Finding:
    return Finding(
        variant=name,
        layer=layer,
        code="dead_units",
        severity="warn",
        title=f"{100 * share:.0f}% of the ReLU units are dead",
        evidence=(
            f"Over the last {frames} frames {100 * share:.1f}% of this layer's units output 0 for "
            f"every example of the batch (chance at this batch size: {100 * chance:.1f}%): they "
            "get no gradient and stop learning."
        ),
        fix=(
            "Lower the learning rate, normalize before the activation (nn.BatchNorm1d, "
            "nn.LayerNorm), or use nn.LeakyReLU so a negative unit still passes a gradient."
        ),
        numbers={"dead_units": share, "chance": chance, "threshold": DEAD_UNITS, "frames": frames},
    )


def _saturated(name: str, layer: int, share: float, frames: int) -> Finding:
    return Finding(
        variant=name,
        layer=layer,
        code="saturated",
        severity="warn",
        title=f"{100 * share:.0f}% of the outputs saturated",
        evidence=(
            f"Over the last {frames} frames {100 * share:.1f}% of this layer's activation outputs "
            "lie within 0.01 of a bound, where the sigmoid/tanh passes almost no gradient."
        ),
        fix=(
            "Normalize before the activation (nn.BatchNorm1d, nn.LayerNorm) so its input stays "
            "near 0, or lower the learning rate or the initial weights' scale."
        ),
        numbers={"saturated": share, "threshold": SATURATED, "frames": frames},
    )


def render_text(findings: list[Finding], hello: dict[str, Json], source: str) -> str:
    """The findings for a person: grouped by variant, then run-wide before each hidden layer
    (counted from 1 here; the JSON's `layer` counts from 0)."""
    if not findings:
        return f"{source}: no problems found ({', '.join(hello['variants'])})\n"
    warns = sum(f.severity == "warn" for f in findings)
    out = [f"{source}: {warns} warnings, {len(findings) - warns} notes\n"]
    for variant in hello["variants"]:
        mine = [f for f in findings if f.variant == variant]
        label = hello["variants"][variant].get("label", "")
        out.append(f"\n{variant} ({label})\n" if label else f"\n{variant}\n")
        if not mine:
            out.append("  no problems found\n")
        layers = sorted({f.layer for f in mine}, key=lambda k: -1 if k is None else k)
        for layer in layers:
            out.append("  whole network\n" if layer is None else f"  hidden layer {layer + 1}\n")
            for finding in (f for f in mine if f.layer == layer):
                out.append(f"    [{finding.severity}] {finding.title}\n")
                out.append(f"      {finding.evidence}\n")
                out.append(f"      fix: {finding.fix}\n")
    return "".join(out)
