"""Frames in their compact form (schema version 2): nothing a reader needs is lost, and what
is left out is exactly what the protocol says (equal taps named, zero ends, zero counts)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from covshift.config import RunConfig
from covshift.train.trainer import Trainer
from covshift.wire import SCHEMA_VERSION, Finite, dense_counts, encode, tap_of

CONFIG = {"dataset": "spirals", "depth": 2, "width": 8, "bins": 16, "steps": 60}


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    trainer = Trainer(RunConfig.model_validate({**CONFIG, "probe_every": 10}))
    hello = trainer.hello()
    frames = []
    while not trainer.done:
        frames += [m for m in trainer.train_step() if m["type"] == "frame"]
    return hello, frames


def bins_of(hello: dict[str, Any], variant: str, layer: int, tap: str) -> int:
    return len(hello["variant_edges"][variant][layer][tap]) - 1


def test_every_tap_reads_back_as_measured(
    run: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    hello, frames = run
    for frame in frames:
        written = json.loads(encode(frame))  # read back by the standard library, not orjson
        assert written["v"] == SCHEMA_VERSION == 2
        for variant, entry in frame["variants"].items():
            for index, layer in enumerate(entry["layers"]):
                back = written["variants"][variant]["layers"][index]
                for tap, measured in layer["taps"].items():
                    stats = tap_of(back, tap)
                    assert stats is not None
                    bins = bins_of(hello, variant, index, tap)
                    assert dense_counts(stats, bins) == measured["counts"]
                    for field in ("underflow", "overflow", "nonfinite"):
                        assert stats.get(field, 0) == measured[field]
                    for field in ("percentiles", "mean", "std", "min", "max"):
                        assert stats[field] == measured[field]
                # Everything else in the layer is written as it is.
                rest = {k: v for k, v in layer.items() if k != "taps"}
                assert {k: v for k, v in back.items() if k != "taps"} == rest


def test_act_input_is_written_as_the_tap_it_equals(
    run: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """docs/protocol.md: act_input is linear_out without a normalizer before the
    activation, and norm_out with one; the compact form writes the later of the two (in the
    frame's order) as the earlier one's name."""
    _, frames = run
    written = orjson.loads(encode(frames[-1]))
    for variant, later, earlier in (
        ("plain", "act_input", "linear_out"),
        ("bn", "norm_out", "act_input"),
    ):
        for layer in written["variants"][variant]["layers"]:
            assert layer["taps"][later] == earlier
            assert isinstance(layer["taps"][earlier], dict)


def test_counts_leave_out_only_zero_ends() -> None:
    stats = {
        "counts": [0, 0, 3, 0, 1, 0],
        "underflow": 0,
        "overflow": 2,
        "nonfinite": 0,
        "percentiles": [0.5],
        "mean": 0.1,
        "std": 0.2,
        "min": 0.0,
        "max": 1.0,
    }
    frame = {
        "v": 1,
        "type": "frame",
        "step": 0,
        "variants": {"a": {"layers": [{"taps": {"x": stats}}]}},
    }
    tap = orjson.loads(encode(frame))["variants"]["a"]["layers"][0]["taps"]["x"]
    assert tap["counts"] == [3, 0, 1] and tap["first"] == 2
    assert "underflow" not in tap and "nonfinite" not in tap and tap["overflow"] == 2
    assert dense_counts(tap, 6) == stats["counts"]
    empty = {**stats, "counts": [0] * 6}
    frame["variants"]["a"]["layers"][0]["taps"]["x"] = empty
    tap = orjson.loads(encode(frame))["variants"]["a"]["layers"][0]["taps"]["x"]
    assert tap["counts"] == [] and "first" not in tap and dense_counts(tap, 6) == [0] * 6


def test_a_version_1_layer_reads_the_same() -> None:
    layer = {"taps": {"linear_out": {"counts": [1, 2], "mean": 0.5}, "act_input": {"mean": 0.5}}}
    assert tap_of(layer, "act_input") == {"mean": 0.5}
    assert tap_of(layer, "norm_xhat") is None
    assert dense_counts({"counts": [1, 2]}, 2) == [1, 2]


def test_the_compact_frame_is_smaller(
    run: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, frames = run
    full = json.dumps(frames[-1], separators=(",", ":"))
    # This small net (8 units, 16 bins): ~20% less, from the named taps and the zero ends.
    assert len(encode(frames[-1])) < 0.85 * len(full)


def test_non_finite_numbers_are_still_flagged_not_silently_null() -> None:
    """orjson writes NaN as null without a word: encode checks first."""
    record = {
        "v": 1,
        "type": "event",
        "value": float("nan"),
        "ok": np.float32("inf"),
        "fine": np.float64(0.25),
    }
    written = json.loads(encode(record))
    assert written["value"] is None and written["ok"] is None and written["fine"] == 0.25
    assert written["nonfinite"] == {"/value": "nan", "/ok": "inf"}
    # A record the packer already checked is trusted as it is (its NaN were flagged there).
    checked = Finite({"v": 1, "type": "event", "loss": None, "nonfinite": {"/loss": "nan"}})
    assert json.loads(encode(checked)) == dict(checked)


def test_frames_keep_float32_values_exactly(
    run: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, frames = run
    written = orjson.loads(encode(frames[-1]))
    means = [
        np.float32(layer["taps"]["linear_out"]["mean"])
        for layer in written["variants"]["bn"]["layers"]
    ]
    for mean, layer in zip(means, frames[-1]["variants"]["bn"]["layers"], strict=True):
        assert mean == np.float32(layer["taps"]["linear_out"]["mean"])
        assert math.isfinite(float(mean))
