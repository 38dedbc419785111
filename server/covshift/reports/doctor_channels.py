"""The BN doctor's per-channel and per-layer checks: running means off the recent batches,
noisy batch statistics, dead or saturated layers, read from a variant's recent frames.

Each check takes the frames a variant recorded last (docs/doctor.md: "recent frames") and
returns Findings; its threshold is named below with the reason for its value. Torch-free:
NumPy only for the per-channel arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from covshift.findings import Finding

Frame = tuple[int, int, list[dict[str, Any]]]  # (step, batch size, the variant's layers)
Array = np.ndarray[Any, np.dtype[np.float64]]

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


def running_mean_off(name: str, frames: list[Frame], config: dict[str, Any]) -> list[Finding]:
    """`running_mean_off`, one finding per layer: channels whose running mean lies further
    from the recent batch means than the threshold and than sampling alone explains."""
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


def batch_noise(name: str, frames: list[Frame], config: dict[str, Any]) -> list[Finding]:
    """`noisy_batch_stats`: each normalization sees fewer than SMALL_BATCH examples (the
    caller asks only of a batch-statistic normalizer)."""
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


def dead_or_saturated(name: str, frames: list[Frame]) -> list[Finding]:
    """`dead_units` (ReLU) or `saturated` (sigmoid/tanh), one finding per layer over its
    threshold, averaged over the frames."""
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
