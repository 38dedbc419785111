"""benchmarks.experiments: the quick version's claims hold in direction (never exact values),
its tables compute what they say from hand-made results, and --write keeps the prose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.experiments import (
    BEGIN,
    END,
    QUICK,
    claims,
    conv_table,
    rises,
    run,
    write_blocks,
)


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    # Module-scoped, so it runs before conftest's per-test one-thread fixture: set it here
    # (with torch's default threads the quick version ran past 10 minutes here, not 40 s).
    torch.set_num_threads(1)
    return run(QUICK)


@pytest.mark.slow
def test_bn_drifts_less_than_plain_on_fixed_data_early_in_training(quick: dict[str, Any]) -> None:
    found = claims(quick["drift"], quick["conv"])
    assert found["bn_drift_below_plain"]
    assert found["plain_drift_above_its_floor"]
    for layers in quick["drift"]["layers"]:  # every seed, the last hidden layer
        assert layers[-1]["bn"] < layers[-1]["plain"]


@pytest.mark.slow
def test_an_mlp_bn_at_batch_2_puts_every_x_hat_at_plus_or_minus_one(quick: dict[str, Any]) -> None:
    # Two values per unit: x̂ = ±(x1 - x2)/|x1 - x2| = ±1 up to eps. At batch 4 x̂ spreads out.
    rows = quick["mlp"]["rows"]
    assert all(r["pm_one"] > 0.9 for r in rows[2])
    assert all(r["pm_one"] < 0.5 for r in rows[4])


@pytest.mark.slow
def test_bn_error_rises_more_than_gn_as_the_conv_batch_shrinks(quick: dict[str, Any]) -> None:
    # The direction only. At the quick version's one epoch it comes from GN gaining most
    # from the small batches' many more steps; at the full run's 30 epochs BN's error itself
    # rises from batch 32 to 2 while GN's falls (docs/experiments.md, conv-batch-sweep).
    assert claims(quick["drift"], quick["conv"])["bn_error_rises_more_than_gn"]


def _conv(errors: dict[str, dict[int, list[float]]]) -> dict[str, Any]:
    """A conv sweep result with the given % errors per variant, batch and seed."""
    batches = sorted(next(iter(errors.values())))
    points = [
        {
            "value": batch,
            "runs": [
                {
                    "variants": {
                        v: {"test": {"acc": 1 - e[batch][s] / 100}} for v, e in errors.items()
                    }
                }
                for s in range(3)
            ],
        }
        for batch in batches
    ]
    config = {"variants": list(errors), "depth": 2, "width": 16, "activation": "relu"}
    config |= {"optimizer": "momentum", "lr": 0.3}
    return {
        "values": batches,
        "points": points,
        "config": config,
        "scale": {"reference": 32},
        "seeds": [0, 1, 2],
        "epochs": 4.0,
    }


def test_the_rise_is_taken_per_seed_from_the_largest_batch_to_the_smallest() -> None:
    conv = _conv(
        {"bn": {2: [30, 34, 38], 32: [20, 21, 22]}, "gn": {2: [25, 25, 25], 32: [24, 26, 25]}}
    )
    assert rises(conv) == {"bn": pytest.approx([10, 13, 16]), "gn": pytest.approx([1, -1, 0])}
    table = conv_table(conv)
    assert "| rise 32 → 2 | 13.0 ± 3.0 | 0.0 ± 1.0 |" in table  # mean, sample std by hand
    assert "| 2 | 34.0 ± 4.0 | 25.0 ± 0.0 |" in table
    assert "23.6 → 34.7 (+11.1)" in table
    assert "seed by seed: +9.0, +14.0, +16.0 (mean 13.0 ± 3.6)." in table


def test_write_replaces_only_the_generated_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "experiments.md"
    first, second = BEGIN.format(name="a"), BEGIN.format(name="b")
    doc.write_text(f"prose 1\n{first}\nold a\n{END}\nprose 2\n{second}\nold b\n{END}\nprose 3\n")
    write_blocks(doc, {"a": "new a", "b": "new b"})
    assert doc.read_text() == (
        f"prose 1\n{first}\nnew a\n{END}\nprose 2\n{second}\nnew b\n{END}\nprose 3\n"
    )
    with pytest.raises(SystemExit, match="no block"):
        write_blocks(doc, {"missing": "x"})
