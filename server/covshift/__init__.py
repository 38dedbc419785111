"""covshift: watch what normalization does inside a network, live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from covshift.watching import Watcher

__version__ = "0.1.0"


def watch(*args: Any, **kwargs: Any) -> Watcher:
    """Measure your own model as it trains (see docs/watch.md). Imports torch on first use,
    so `import covshift` stays light for the server and the reports."""
    from covshift.watching import watch as start_watching

    return start_watching(*args, **kwargs)
