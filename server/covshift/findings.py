"""A finding about a run's normalization: what is wrong, its evidence in numbers, and the fix.

Torch-free and free of covshift's packages, so the reports (reading a stored run) and the
training core (watching a live model) produce the same type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["warn", "info"]
# A finding's numbers: plain JSON scalars, or lists of them (the worst channels, say).
Number = float | int | str | bool | None | Sequence[float | None]


@dataclass(frozen=True)
class Finding:
    """One problem (severity "warn") or notable fact ("info") about one variant; `layer` is
    None for the whole network, else 0-based: a run's hidden layer (the index into a frame's
    `layers`), or in a live model the BN module's index among its BN modules."""

    variant: str
    layer: int | None
    code: str  # stable, machine-readable name of the check that fired
    severity: Severity
    title: str  # a few words
    evidence: str  # one sentence with the numbers that made the check fire
    fix: str  # one sentence; names the PyTorch call where there is one
    # Not part of the hash: a dict cannot be hashed, and the text already identifies it.
    numbers: Mapping[str, Number] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict; a non-finite number becomes None (JSON has no NaN)."""
        return {
            "variant": self.variant,
            "layer": self.layer,
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "evidence": self.evidence,
            "fix": self.fix,
            "numbers": {name: _finite(value) for name, value in self.numbers.items()},
        }


def _finite(value: Number) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [v if v is None or math.isfinite(v) else None for v in value]
    return value
