"""Watching the user's own model: covshift's measurements of a training loop it does not own.

`watch(model)` hooks the model every N steps, measures it with the training core's own
probes, and writes a run folder in the run store's format that `covshift serve --logdir`
shows live. It may import torch, covshift.train and covshift's top-level modules (wire,
variants, settings); never the web layer, the worker runtime or the reports.
"""

from __future__ import annotations

from .watcher import Watcher, watch

__all__ = ["Watcher", "watch"]
