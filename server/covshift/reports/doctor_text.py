"""The BN doctor's findings as text for a person: grouped by variant, then by layer."""

from __future__ import annotations

from covshift.findings import Finding
from covshift.wire import Json


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
