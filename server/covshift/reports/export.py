"""CSV export of a run: one row per frame per variant, columns fixed by the run's depth.

Columns, in order:

    step, epoch, lr, batch_size    the frame's step (updates taken before it), epochs
                                   done, and the learning rate and batch size in force
    variant, status                e.g. "bn"; "training", "skipped" or "diverged"
    loss, acc                      training loss and accuracy on the frame's mini-batch
    test_loss, test_acc            on the test set in eval mode; only on tested steps
    layer<i>_act_input_<stat>      for hidden layer i = 1..depth, the activation's input
                                   (after the normalizer, if any): mean, std, p15, p50, p85
                                   (15th/50th/85th percentiles over the batch and units)

An empty cell means "not measured at this step" (no test, or a variant that did not
train) or a non-finite value (the frame's "nonfinite" map says which).

A record that does not fit these columns (a damaged file) is left out whole and counted
in the log: the export is a whole table, never one cut off mid-stream by an error.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from covshift.config import RunConfig
from covshift.wire import MISFIT, tap_of

BASE_COLUMNS = (
    "step",
    "epoch",
    "lr",
    "batch_size",
    "variant",
    "status",
    "loss",
    "acc",
    "test_loss",
    "test_acc",
)
LAYER_STATS = ("mean", "std", "p15", "p50", "p85")
PERCENTILE_STATS = {"p15": 15, "p50": 50, "p85": 85}
# The hello's depth within the run config's bounds: a damaged one must not size the table.
DEPTH: TypeAdapter[int] = TypeAdapter(Annotated[int, RunConfig.model_fields["depth"]])

# A record of the wrong shape, or one whose depth is out of the config's bounds.
UNFIT: tuple[type[Exception], ...] = (*MISFIT, ValidationError)

log = logging.getLogger(__name__)


def columns(depth: int) -> list[str]:
    layer_columns = [
        f"layer{layer}_act_input_{stat}" for layer in range(1, depth + 1) for stat in LAYER_STATS
    ]
    return [*BASE_COLUMNS, *layer_columns]


def csv_lines(lines: Iterable[str]) -> Iterator[str]:
    """CSV text (header first) from a run's message lines (hello first, as frames.jsonl)."""
    depth = 0
    percentile_index: dict[str, int] = {}
    misfits = 0
    for line in lines:
        rows: list[str] = []
        try:
            # Parsed already when it comes from the run store (store.Message).
            record = getattr(line, "record", None)
            if record is None:
                record = json.loads(line)
            if record.get("type") == "hello":
                depth, percentile_index = _layout(record)
                rows = [_row(columns(depth))]
            elif record.get("type") == "frame" and depth:
                rows = [
                    _row(_frame_row(record, variant, entry, depth, percentile_index))
                    for variant, entry in record["variants"].items()
                ]
        except UNFIT:
            misfits += 1
        yield from rows
    if misfits:
        log.warning("CSV export: left out %d records that do not fit its columns", misfits)


def _layout(hello: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """The depth and where the 15th/50th/85th percentiles are, from a hello record."""
    depth = DEPTH.validate_python(hello["config"]["depth"])
    percentiles = list(hello["percentiles"])
    percentile_index = {
        stat: percentiles.index(p) for stat, p in PERCENTILE_STATS.items() if p in percentiles
    }
    return depth, percentile_index


def _frame_row(
    frame: dict[str, Any],
    variant: str,
    entry: dict[str, Any],
    depth: int,
    percentile_index: dict[str, int],
) -> list[Any]:
    test = entry.get("test") or {}
    row: list[Any] = [
        frame["step"],
        frame["epoch"],
        frame["lr"],
        frame["batch_size"],
        variant,
        entry.get("status"),
        entry.get("loss"),
        entry.get("acc"),
        test.get("loss"),
        test.get("acc"),
    ]
    layers = entry.get("layers") or []
    for index in range(depth):
        stats: dict[str, Any] = {}
        if index < len(layers):
            stats = tap_of(layers[index], "act_input") or {}
        row.append(stats.get("mean"))
        row.append(stats.get("std"))
        percentiles = stats.get("percentiles") or []
        for stat in ("p15", "p50", "p85"):
            at = percentile_index.get(stat)
            row.append(percentiles[at] if at is not None and at < len(percentiles) else None)
    return row


def _row(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue()
