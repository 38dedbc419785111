"""Frames projected to a page's view, and the compressed history a page joins with."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from covshift.web.audience import Audience
from covshift.web.fanout import ClientQueue
from covshift.web.projection import View, history_message, project, view_error
from covshift.web.store import RunStore
from covshift.wire import encode, message


def frame(step: int) -> dict[str, Any]:
    stats = {"counts": [0, 2, 5, 0], "percentiles": [0.1 * step], "mean": 0.5}
    other = {"counts": [1, 1, 1, 1], "percentiles": [0.2], "mean": 0.25, "overflow": 3}
    return message(
        "frame",
        step=step,
        variants={
            "plain": {
                "layers": [
                    {
                        "taps": {
                            "linear_out": stats,
                            "act_input": dict(stats),
                            "act_output": other,
                        },
                        "bn": None,
                    }
                ]
            },
            "bn": {
                "layers": [
                    {
                        "taps": {"linear_out": other, "norm_xhat": stats},
                        "bn": {"running_mean": [1.0, 2.0, 3.0], "r_max": 3.0},
                    }
                ]
            },
        },
    )


def test_only_the_views_tap_keeps_its_histogram_and_one_channel_its_lists() -> None:
    written = json.loads(encode(frame(1)))  # compact: plain's act_input is "linear_out"
    shown = project(written, View("act_input", 2))
    plain = shown["variants"]["plain"]["layers"][0]["taps"]
    assert plain["act_input"] == "linear_out"
    assert plain["linear_out"]["counts"] == [2, 5] and plain["linear_out"]["first"] == 1
    assert plain["act_output"] == {"percentiles": [0.2], "mean": 0.25, "overflow": 3}
    bn = shown["variants"]["bn"]["layers"][0]
    assert "counts" not in bn["taps"]["linear_out"] and "counts" not in bn["taps"]["norm_xhat"]
    assert bn["bn"] == {"running_mean": [3.0], "r_max": 3.0, "channels": [2]}
    assert (
        project(written, View("act_input", 7))["variants"]["bn"]["layers"][0]["bn"]["running_mean"]
        == []
    )
    assert written["variants"]["bn"]["layers"][0]["bn"]["running_mean"] == [1.0, 2.0, 3.0]


def test_the_history_holds_every_message_in_order_frames_projected() -> None:
    view = View("norm_xhat", 0)
    texts = [
        encode(frame(0)),
        encode(message("event", step=1, kind="lr", value=0.1)),
        encode(frame(2)),
    ]
    joined = json.loads(gzip.decompress(history_message(texts, view)))
    assert joined["type"] == "history"
    assert joined["messages"] == [
        project(json.loads(texts[0]), view),
        json.loads(texts[1]),
        project(json.loads(texts[2]), view),
    ]
    # Projections made already are used as they are, not made again.
    reused = json.loads(gzip.decompress(history_message(texts, view, {texts[2]: '{"mark":1}'})))
    assert reused["messages"][2] == {"mark": 1}


@pytest.mark.parametrize(
    ("tap", "channel", "field"),
    [
        ("act input", 0, "tap"),
        ("", 0, "tap"),
        (3, 0, "tap"),
        ("act_input", -1, "channel"),
        ("act_input", True, "channel"),
        ("act_input", 1.5, "channel"),
        ("x" * 65, 0, "tap"),
    ],
)
def test_a_bad_view_is_named_by_its_field(tap: object, channel: object, field: str) -> None:
    problem = view_error(tap, channel)
    assert problem is not None and problem.startswith(f"{field}:")
    assert view_error("act_input", 0) is None


def test_a_joining_page_gets_the_same_history_whether_or_not_others_watch(tmp_path: Path) -> None:
    """The live frames a watched view already projected are reused for a later join."""

    async def scenario() -> tuple[bytes, bytes, int]:
        view = View("act_input", 1)
        audience = Audience("r" * 22, RunStore(tmp_path), history_frames=8, live=True)
        watching = ClientQueue(100, view)
        await audience.attach(watching)
        texts = [encode(frame(step)) for step in range(12)]
        for text in texts:
            audience.deliver(text, True)
        kept = len(audience.projected(view))
        _, history = await audience.snapshot()
        return (
            history_message(history, view, audience.projected(view)),
            history_message(history, view),
            kept,
        )

    with_memo, without, kept = asyncio.run(scenario())
    assert kept == 12 and gzip.decompress(with_memo) == gzip.decompress(without)
