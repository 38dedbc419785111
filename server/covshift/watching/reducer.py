"""The writer thread's half of a watched frame: a FrameStep reduced by the probes to messages.

Runs on the folder's writer thread, one frame step at a time in step order, so the Probe's
drift history and the histogram edges fixed at the first frame see frames in order. It
holds the run's Probes; the training thread never touches them after creating them.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import cast

import torch
from torch import nn

from covshift.train.histogram import PERCENTILES
from covshift.train.models import MLP
from covshift.train.packing import Packer
from covshift.train.probes import Probe, tap_values, taps_of
from covshift.variants import VARIANTS
from covshift.wire import Json, message

from .folder import Record
from .layers import WatchedLayer, WatchedModel, activation_family, complete
from .snapshot import FrameStep

log = logging.getLogger(__name__)

# Variant colours in the registry's order, so a watched run looks like the built-in ones.
COLORS = [info.color for info in VARIANTS.values()]


class Reducer:
    """Turns frame steps into the hello (at the first one) and frames."""

    def __init__(
        self, watched: dict[str, WatchedModel], config: dict[str, Json], bins: int
    ) -> None:
        self.watched = watched  # the live layers: read for their types and names only
        self.config = config
        self.probes = {v: Probe(activation_family(w), bins) for v, w in watched.items()}
        self.calibrated = False

    def __call__(self, frame_step: FrameStep) -> list[Record]:
        """The records for one frame step; none (logged) when measuring it fails, so a
        measuring bug never stops the writer or the training."""
        try:
            with ExitStack() as on_streams:
                for stream in frame_step.streams:
                    on_streams.enter_context(torch.cuda.stream(stream))
                return self._records(frame_step)
        except Exception:
            log.exception("covshift.watch: measuring step %d failed", frame_step.step)
            return []

    def _records(self, frame_step: FrameStep) -> list[Record]:
        values: dict[str, list[dict[str, torch.Tensor]]] = {}
        for variant, captured in frame_step.captured.items():
            model = frame_step.models[variant]
            taps = complete(model, captured)
            if taps is None:  # checked at the frame step; kept for the type
                raise RuntimeError(f"incomplete capture of {variant}")
            values[variant] = tap_values(cast(MLP, model), taps)
        records = []
        if not self.calibrated:
            for variant, layers in values.items():
                live = cast(MLP, self.watched[variant])
                self.probes[variant].calibrate({variant: layers}, models={variant: live})
            records.append(Record(self.hello()))
            self.calibrated = True
        packer = Packer()
        frame = message(
            "frame",
            step=frame_step.step,
            epoch=None,
            lr=frame_step.lr,
            batch_size=frame_step.batch_size,
            variants={v: self._variant(v, values, frame_step, packer) for v in self.watched},
            dropped=frame_step.dropped,
        )
        records.append(Record(frame, packer))
        return records

    def _variant(
        self,
        variant: str,
        values: dict[str, list[dict[str, torch.Tensor]]],
        frame_step: FrameStep,
        packer: Packer,
    ) -> dict[str, Json]:
        entry: dict[str, Json] = {"status": "training"}
        for key, value in frame_step.scalars.get(variant, {}).items():
            entry[key] = packer.add(value)
        if variant in values:
            model = frame_step.models[variant]
            layers = self.probes[variant].reduce(
                {variant: values[variant]}, {variant: cast(MLP, model)}, packer
            )[variant]
            for layer, layer_entry in zip(model.layers, layers, strict=True):
                # One part per layer: a model split over devices still costs one transfer each.
                layer_entry["grad_norm"] = packer.add(grad_norm(layer, frame_step.grads))
            entry["layers"] = layers
        return entry

    def hello(self) -> dict[str, Json]:
        variants: dict[str, Json] = {}
        for i, (variant, watched) in enumerate(self.watched.items()):
            norms = [layer.norm for layer in watched.layers if layer.norm is not None]
            variants[variant] = {
                "label": variant,
                "name": variant,
                "color": COLORS[i % len(COLORS)],
                "normalizer": type(norms[0]).__name__ if norms else None,
                "batch_stats": any(isinstance(n, nn.modules.batchnorm._BatchNorm) for n in norms),
                "taps": list(taps_of(cast(MLP, watched))),
                # As the built-in nets' hello describes each layer, with the user's names.
                "layers": [layer.describe() for layer in watched.layers],
            }
        return message(
            "hello",
            config=self.config,
            dataset=None,
            variants=variants,
            percentiles=list(PERCENTILES),
            edges=[],
            variant_edges={v: p.edges_json(v) for v, p in self.probes.items()},
        )


def grad_norm(layer: WatchedLayer, grads: dict[int, torch.Tensor]) -> torch.Tensor:
    """The norm of the layer's weights' gradients, from the per-parameter norms the gradient
    hooks took at backward time."""
    weights = layer.weights()
    norms = [grads[id(p)] for p in weights if id(p) in grads]
    if not norms:  # no backward, or a feeding layer without weights: null in the frame
        device = weights[0].device if weights else None
        return torch.tensor(float("nan"), device=device)
    total: torch.Tensor = torch.linalg.vector_norm(torch.stack(norms))
    return total
