"""Sweeps: short runs over batch sizes or learning rates, each scored and checked for divergence.

Every point is a full lockstep run of the same base config with one field
changed, on the same data, from the same seed, so points differ only in that
field. A point never crashes the sweep: a loss that goes non-finite is caught by
the trainer (diverged), one that grows past BLOWUP_FACTOR times its start is
called blown up, and the sweep goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from covshift.config import RunConfig
from covshift.wire import Json

from .data import Dataset, load_dataset
from .inference import norm_inputs, running_stat_norms
from .models import Network
from .norms import restoring_state
from .trainer import Trainer

# A training loss this many times the loss at step 0 (chance level: ln C) is a blow-up.
BLOWUP_FACTOR = 5.0
# Random batches drawn to measure how much batch statistics vary from batch to batch.
NOISE_BATCHES = 100
# Frames per point: enough to catch a blow-up between them, few enough to stay cheap.
FRAMES_PER_POINT = 20

PointDone = Callable[[int, int, dict[str, Json]], None]


def run_sweep(
    base: RunConfig,
    field: str,
    values: Sequence[float],
    on_point: PointDone | None = None,
    dataset: Dataset | None = None,
) -> dict[str, Json]:
    """Run base with field set to each value in turn; return every point's results."""
    data = dataset or load_dataset(base.dataset, base.data_dir)
    started = time.perf_counter()
    points = []
    for index, value in enumerate(values):
        config = RunConfig.model_validate({**base.model_dump(), field: value})
        point = {"value": value, **run_point(config, data)}
        points.append(point)
        if on_point is not None:
            on_point(index + 1, len(values), point)
    return {
        "type": "sweep",
        "field": field,
        "values": list(values),
        "config": base.model_dump(mode="json"),
        "dataset": {"name": data.name, "n_train": len(data.y_train), "n_test": len(data.y_test)},
        "points": points,
        "seconds": time.perf_counter() - started,
    }


def run_point(config: RunConfig, data: Dataset) -> dict[str, Json]:
    """Train one point to the end; per variant its status and final numbers."""
    cadence = max(1, config.steps // FRAMES_PER_POINT)
    config = config.model_copy(update={"probe_every": cadence})
    trainer = Trainer(config, data)
    results: dict[str, dict[str, Any]] = {
        v: {"status": "skipped", "diverged_at": None, "loss": None, "test": None}
        for v in config.variants
    }
    first: dict[str, float] = {}
    while not (trainer.done or trainer.all_diverged):
        for record in trainer.train_step():
            if record["type"] == "frame":
                _note_frame(record, results, first)
    for variant, result in results.items():
        if trainer.diverged_at[variant] is not None:
            result["status"], result["diverged_at"] = "diverged", trainer.diverged_at[variant]
    noise = {
        v: batch_statistics_noise(m, data.x_train, config.batch_size, config.seed)
        for v, m in trainer.models.items()
        if running_stat_norms(m) and results[v]["status"] == "trained"
    }
    return {"variants": results, "batch_noise": noise}


def _note_frame(
    frame: dict[str, Json], results: dict[str, dict[str, Any]], first: dict[str, float]
) -> None:
    for variant, entry in frame["variants"].items():
        result = results[variant]
        if "test" in entry:
            result["test"] = entry["test"]
        loss = entry.get("loss")
        if entry["status"] != "training" or loss is None:
            continue
        result["loss"] = loss
        first.setdefault(variant, loss)
        if result["status"] == "skipped":
            result["status"] = "trained"
        if not math.isfinite(loss) or loss > BLOWUP_FACTOR * first[variant]:
            result["status"] = "blew_up"


@torch.no_grad()
def batch_statistics_noise(
    model: Network, x_train: torch.Tensor, batch_size: int, seed: int
) -> list[dict[str, float]]:
    """Per running-statistics layer, how much the batch statistics vary across random batches:
    the std of the batch mean in units of the feature's std ("mean", ~1/sqrt(B) for
    independent examples) and of the unbiased batch variance in units of its variance ("var"),
    averaged over features. Measured in train mode; training state is put back."""
    size = max(batch_size, 2)
    generator = torch.Generator().manual_seed(seed)
    norms = running_stat_norms(model)
    means: list[list[torch.Tensor]] = [[] for _ in norms]
    variances: list[list[torch.Tensor]] = [[] for _ in norms]
    with restoring_state(model), norm_inputs(norms) as seen:
        model.train()
        for _ in range(NOISE_BATCHES):
            pick = torch.randperm(len(x_train), generator=generator)[:size]
            seen.clear()
            model(x_train[pick.to(x_train.device)])
            for inputs, mean, var in zip(seen, means, variances, strict=True):
                mean.append(inputs.mean(dim=0))
                var.append(inputs.var(dim=0))
    result = []
    for mean, var in zip(means, variances, strict=True):
        # The spread of the features themselves, by the law of total variance: the mean of
        # the within-batch (biased, (B-1)/B of the unbiased) variances plus the variance of
        # the batch means. Without the (B-1)/B this estimates σ²(1 + 1/B), and the noise
        # came out as 1/sqrt(B + 1) instead of 1/sqrt(B) (-18% at B = 2).
        spread = torch.stack(var).mean(dim=0) * (size - 1) / size + torch.stack(mean).var(dim=0)
        result.append(
            {
                "mean": float((torch.stack(mean).std(dim=0) / spread.sqrt()).nanmean()),
                "var": float((torch.stack(var).std(dim=0) / spread).nanmean()),
                "reference": 1 / math.sqrt(size),
            }
        )
    return result
