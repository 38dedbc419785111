"""Wire records: one-sync packing gives back exactly the packed values; no bare NaN/Infinity."""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from covshift.train.packing import Packer
from covshift.wire import SCHEMA_VERSION, json_safe, message


def test_packer_returns_the_exact_values_in_place() -> None:
    packer = Packer()
    matrix = torch.tensor([[1.5, 2.25], [3.0, -4.0]], dtype=torch.float32)
    counts = torch.tensor([3, 0, 7])
    template = {
        "m": packer.add(matrix),
        "row": packer.add(matrix).row(1),
        "cell": packer.add(matrix).row(0).row(1),
        "counts": packer.add(counts),
        "span": packer.add(torch.arange(5.0)).part_of(1, 3),
        "kept": "text",
    }
    assert packer.resolve(template) == {
        "m": [[1.5, 2.25], [3.0, -4.0]],
        "row": [3.0, -4.0],
        "cell": 2.25,
        "counts": [3, 0, 7],
        "span": [1.0, 2.0],
        "kept": "text",
    }


def test_packed_values_are_copies_taken_when_added() -> None:
    packer = Packer()
    tensor = torch.zeros(2)
    slot = packer.add(tensor)
    tensor += 5  # an optimizer step after the probe must not leak into the frame
    assert packer.resolve({"x": slot}) == {"x": [0.0, 0.0]}


def test_non_finite_values_become_null_with_a_flag() -> None:
    packer = Packer()
    template = message(
        "frame",
        a=packer.add(torch.tensor([1.0, float("nan")])),
        b={"c": packer.add(torch.tensor(float("-inf")))},
    )
    frame = packer.resolve(template)
    assert frame["a"] == [1.0, None] and frame["b"]["c"] is None
    assert frame["nonfinite"] == {"/a/1": "nan", "/b/c": "-inf"}
    json.dumps(frame, allow_nan=False)


def test_json_safe_escapes_pointer_keys_and_keeps_finite_records_unflagged() -> None:
    record = json_safe({"v": 1, "odd/key~": math.inf, "fine": 2.0})
    assert record == {"v": 1, "odd/key~": None, "fine": 2.0, "nonfinite": {"/odd~1key~0": "inf"}}
    assert "nonfinite" not in json_safe({"x": [1.0, 2.0]})
    assert message("hello")["v"] == SCHEMA_VERSION


def test_float32_values_are_written_short_and_round_trip_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    exponents = torch.randint(-12, 9, (4000,), generator=generator).double()
    values = (torch.randn(4000, generator=generator, dtype=torch.float64) * 10**exponents).float()
    values[:4] = torch.tensor([0.1, -0.0, 1e-30, 3e12])
    packer = Packer()
    written = packer.resolve({"x": packer.add(values)})["x"]
    back = torch.tensor(written, dtype=torch.float64).float()
    assert torch.equal(back, values), "every float32 survives the trip bit for bit"
    text = json.dumps(written)
    assert len(text) < 15 * len(written)  # float64 reprs of float32 values need ~20
    assert written[0] == 0.100000001  # float32(0.1) to 9 significant digits


def test_float64_parts_are_written_to_9_significant_digits() -> None:
    """A statistic computed in float64 from float32 data (a percentile, a mean): 9 digits,
    two more than its data has, in ~11 characters instead of ~19."""
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(1000, generator=generator, dtype=torch.float64) * 1e3
    packer = Packer()
    written = packer.resolve({"x": packer.add(values), "n": packer.add(torch.tensor(7))})
    assert written["n"] == 7 and isinstance(written["n"], int)
    for got, exact in zip(written["x"], values.tolist(), strict=True):
        assert got == float(f"{exact:.9g}")  # the decimal Python itself rounds to
        assert len(repr(got).lstrip("-").replace(".", "").lstrip("0")) <= 9


def test_host_numbers_are_written_in_shortened_and_flagged_with_the_parts() -> None:
    """Packer.later: NumPy numbers a producer holds (a tap's mean, a drift) are shortened with
    the frame's tensors, handed back in their shape before the template is filled, and a
    non-finite one is flagged where it lands; the parts around them keep their values."""
    generator = np.random.default_rng(2)
    host = generator.standard_normal((3, 4)) * 1e3
    host[2, 1] = math.nan
    packer = Packer()
    entries: list[dict[str, object]] = [{"mean": None, "rest": None} for _ in range(3)]

    def fill(rows: object) -> None:
        assert isinstance(rows, list)
        for entry, row in zip(entries, rows, strict=True):
            entry.update(mean=row[0], rest=row[1:])

    template = message(
        "frame",
        before=packer.add(torch.tensor([0.5, 0.25], dtype=torch.float32)),
        counts=packer.add(torch.tensor([4, 9])),
        entries=entries,
    )
    packer.later(host, fill)
    frame = packer.resolve(template)
    assert frame["before"] == [0.5, 0.25] and frame["counts"] == [4, 9]
    expected = [[None if math.isnan(v) else float(f"{v:.9g}") for v in row] for row in host]
    assert [[e["mean"], *e["rest"]] for e in frame["entries"]] == expected
    assert frame["nonfinite"] == {"/entries/2/rest/0": "nan"}
    json.dumps(frame, allow_nan=False)
