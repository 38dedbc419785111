"""The BN doctor: findings about a run's normalization, read from its hello and records.

Each check reads only the wire records (docs/protocol.md), so it serves a headless run's
frames.jsonl and the server's run log alike, live or finished. This module gathers each
variant's records and runs the whole-network checks (the train/eval gap, population
statistics, skipped and diverged variants); doctor_channels.py holds the per-channel and
per-layer ones, runfile.py reads a run. Every threshold is named with the reason for its
value; docs/doctor.md says how to read the output. Torch-free.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from covshift.findings import Finding
from covshift.wire import MISFIT, Json

# The per-channel thresholds are importable from here too, so every threshold is found in
# one place (docs/doctor.md); each is declared once, beside the check that uses it.
from .doctor_channels import DEAD_UNITS as DEAD_UNITS
from .doctor_channels import RUNNING_MEAN_SHIFT as RUNNING_MEAN_SHIFT
from .doctor_channels import SATURATED as SATURATED
from .doctor_channels import SHIFT_NOISE_MULTIPLE as SHIFT_NOISE_MULTIPLE
from .doctor_channels import SMALL_BATCH as SMALL_BATCH
from .doctor_channels import WORST_CHANNELS as WORST_CHANNELS
from .doctor_channels import Frame, batch_noise, dead_or_saturated, running_mean_off
from .runfile import run_records

log = logging.getLogger(__name__)

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


def diagnose_lines(run_id: str, lines: Iterable[str]) -> list[Finding]:
    """Every finding about a run the server holds, from its message lines (hello first, as
    frames.jsonl): what GET /api/runs/{id}/doctor answers. NoDataYet before the hello,
    DamagedRun when the hello cannot be read (both 409)."""
    hello, records = run_records(run_id, lines)
    return diagnose(hello, records)


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
            findings += batch_noise(name, frames, config)
        findings += running_mean_off(name, frames, config)
    return findings + dead_or_saturated(name, frames)


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
