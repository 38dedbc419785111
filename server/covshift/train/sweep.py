"""Sweeps: short runs over batch sizes or learning rates, each scored and checked for divergence.

Every point is a full lockstep run of the same base config with one field
changed (and the fields a Scale derives from it), on the same data, from the same
seed, so points differ only in that field. Over several seeds each point is run
once per seed and reports the mean and the sample std (ddof 1) over them. A point
never crashes the sweep: a loss that goes non-finite is caught by the trainer
(diverged), one that grows past BLOWUP_FACTOR times its start is called blown up,
and the sweep goes on.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from covshift.config import RunConfig
from covshift.presets import Scale, point_config
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
    *,
    scale: Scale | None = None,
    seeds: Sequence[int] = (),
) -> dict[str, Json]:
    """Run base with field set to each value in turn (and `scale`'s fields derived from it);
    return every point's results. With `seeds`, each point runs once per seed and reports
    the mean over them, its spread and every seed's own results (under "runs")."""
    data = dataset or load_dataset(base.dataset, base.data_dir)
    # Every point's config is checked before the first trains: a derived value past its
    # bound fails the sweep at once, not after the points before it.
    configs = [point_config(base, field, value, scale) for value in values]
    started = time.perf_counter()
    points = []
    for index, (value, config) in enumerate(zip(values, configs, strict=True)):
        if seeds:
            runs = [
                {"seed": seed, **run_point(config.model_copy(update={"seed": seed}), data)}
                for seed in seeds
            ]
            point = {"value": value, **over_seeds(runs), "runs": runs}
        else:
            point = {"value": value, **run_point(config, data)}
        points.append(point)
        if on_point is not None:
            on_point(index + 1, len(values), point)
    result: dict[str, Json] = {
        "type": "sweep",
        "field": field,
        "values": list(values),
        "config": base.model_dump(mode="json"),
        "dataset": {"name": data.name, "n_train": len(data.y_train), "n_test": len(data.y_test)},
        "points": points,
        "seconds": time.perf_counter() - started,
    }
    if scale is not None:
        result["scale"] = scale.to_json()
    if seeds:
        result["seeds"] = list(seeds)
    return result


def over_seeds(runs: list[dict[str, Any]]) -> dict[str, Json]:
    """One point's runs over seeds as one: per variant the mean of every number over the
    seeds that have it, its sample std beside it ("test_std", "loss_std"), and a status
    that is "trained" only when every seed trained (else the first other status)."""
    variants: dict[str, Json] = {}
    for variant in runs[0]["variants"]:
        entries = [run["variants"][variant] for run in runs]
        statuses = [entry["status"] for entry in entries]
        tests = [entry["test"] for entry in entries if entry["test"] is not None]
        keys = [key for key in (tests[0] if tests else {}) if all(key in t for t in tests)]
        variants[variant] = {
            "status": next((s for s in statuses if s != "trained"), "trained"),
            "statuses": statuses,
            "diverged_at": min(
                (e["diverged_at"] for e in entries if e["diverged_at"] is not None),
                default=None,
            ),
            "loss": _mean([entry["loss"] for entry in entries]),
            "loss_std": _std([entry["loss"] for entry in entries]),
            "test": {key: _mean([t[key] for t in tests]) for key in keys} if tests else None,
            "test_std": {key: _std([t[key] for t in tests]) for key in keys} if tests else None,
        }
    noise: dict[str, Json] = {}
    for variant in runs[0]["batch_noise"]:
        layers = [run["batch_noise"][variant] for run in runs if variant in run["batch_noise"]]
        noise[variant] = [
            {key: _mean([layer[k][key] for layer in layers]) for key in layers[0][k]}
            for k in range(len(layers[0]))
        ]
    return {"variants": variants, "batch_noise": noise}


def _finite(numbers: list[float | None]) -> list[float]:
    return [x for x in numbers if x is not None and math.isfinite(x)]


def _mean(numbers: list[float | None]) -> float | None:
    finite = _finite(numbers)
    return statistics.fmean(finite) if finite else None


def _std(numbers: list[float | None]) -> float | None:
    """Sample std (ddof 1); None from fewer than two numbers."""
    finite = _finite(numbers)
    return statistics.stdev(finite) if len(finite) > 1 else None


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
