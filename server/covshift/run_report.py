"""The HTML report of one server run, live or finished, from its messages (hello first)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .errors import CovshiftError
from .report import render_run_report


def report_html(run_id: str, lines: Iterable[str]) -> str:
    """The self-contained report of a run's message lines, as frames.jsonl holds them."""
    hello: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    for line in lines:
        record = json.loads(line)
        if record.get("type") == "hello":
            hello = record
        elif hello is not None:
            records.append(record)
    if hello is None:
        raise NoDataYet(f"run {run_id} has no data yet (its worker is still loading)")
    return render_run_report(hello, records, title=f"covshift run {run_id}")


def report_filename(run_id: str) -> str:
    return f"covshift-{run_id}-report.html"


class NoDataYet(CovshiftError):
    """The run's hello has not arrived: nothing to report yet."""
