"""The variant registry: every network variant a run can train, declared once (torch-free).

A variant is the same MLP with one normalizer choice. Everything else derives from its
entry here: the `Variant` type and the variant-count bound of the config, which variants
batch size 1 cannot train, the label and colour in the page and the reports, the normalizer
named in the hello, and whether the hidden Linear layers keep their bias. The module that
builds the normalizer is found by `norm` in covshift.train.norms.NORMS.

Adding a normalizer: its module in covshift/train/ with an entry in NORMS, one entry here,
and its explanation text in the page's messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

Placement = Literal["none", "before", "after"]


@dataclass(frozen=True)
class VariantInfo:
    """What a variant is, in the words the page and the reports use."""

    label: str  # short, for legends
    description: str  # one line, for the setup form and the reports
    color: str  # one colour everywhere (page, reports); Tableau 10, safe for most CVD
    norm: str | None  # key of covshift.train.norms.NORMS, None without a normalizer
    normalizer: str | None  # the torch module, as the hello names it
    placement: Placement = "before"
    batch_stats: bool = False  # normalizes with batch statistics: batch size 1 cannot train it
    weight_norm: bool = False  # WeightNorm on every hidden Linear layer

    @property
    def linear_bias(self) -> bool:
        """A batch normalizer before the activation subtracts the batch mean, which cancels
        any constant the Linear layer adds, so its bias is dropped (Ioffe & Szegedy, Sec. 3.2);
        a per-example normalizer (LayerNorm, GroupNorm, RMSNorm) does not cancel it."""
        return not (self.batch_stats and self.placement == "before")


VARIANTS: dict[str, VariantInfo] = {
    "plain": VariantInfo("plain", "no normalization", "#4c78a8", None, None, placement="none"),
    "bn": VariantInfo(
        "BN", "BatchNorm before the activation", "#f58518", "bn", "BatchNorm1d", batch_stats=True
    ),
    "bn_after": VariantInfo(
        "BN after act.",
        "BatchNorm after the activation",
        "#54a24b",
        "bn",
        "BatchNorm1d",
        placement="after",
        batch_stats=True,
    ),
    "ln": VariantInfo("LayerNorm", "LayerNorm before the activation", "#b279a2", "ln", "LayerNorm"),
    "gn": VariantInfo("GroupNorm", "GroupNorm before the activation", "#9d755d", "gn", "GroupNorm"),
    "rms": VariantInfo(
        "RMSNorm",
        "RMSNorm before the activation (no mean subtraction, no β)",
        "#17becf",
        "rms",
        "RMSNorm",
    ),
    "wn": VariantInfo(
        "WeightNorm",
        "WeightNorm on every hidden Linear layer",
        "#72b7b2",
        None,
        None,
        placement="none",
        weight_norm=True,
    ),
    "brn": VariantInfo(
        "Batch Renorm",
        "Batch Renorm before the activation",
        "#e45756",
        "brn",
        "BatchRenorm1d",
        batch_stats=True,
    ),
    "noisy_bn": VariantInfo(
        "noisy BN",
        "BatchNorm plus shifting noise (Santurkar et al.)",
        "#79706e",
        "noisy_bn",
        "NoisyBatchNorm1d",
        batch_stats=True,
    ),
    "ghost_bn": VariantInfo(
        "ghost BN",
        "BatchNorm over ghost batches",
        "#ff9da6",
        "ghost_bn",
        "GhostBatchNorm1d",
        batch_stats=True,
    ),
}

if TYPE_CHECKING:
    Variant = str
else:
    # A Literal built from the registry: the API schema lists exactly these names.
    Variant = Literal[tuple(VARIANTS)]

# Variants whose normalizer needs batch statistics, so batch size 1 cannot train them.
BATCH_STAT_VARIANTS: frozenset[str] = frozenset(k for k, v in VARIANTS.items() if v.batch_stats)


def variant_table() -> dict[str, dict[str, object]]:
    """The registry as plain data, for the page (GET /api/rules) and the hello."""
    return {
        key: {
            "label": info.label,
            "description": info.description,
            "color": info.color,
            "normalizer": info.normalizer,
            "placement": info.placement,
            "batch_stats": info.batch_stats,
            "weight_norm": info.weight_norm,
        }
        for key, info in VARIANTS.items()
    }
