"""Run configuration: every user-settable knob, its default and its bounds (only here)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .variants import BATCH_STAT_VARIANTS, VARIANTS, Variant

Activation = Literal["sigmoid", "tanh", "relu"]
Init = Literal["gaussian", "default"]
Optimizer = Literal["sgd", "momentum", "adam"]
DatasetName = Literal["digits", "moons", "spirals", "mnist1d", "mnist"]
Device = Literal["cpu", "cuda"]


# Live controls share these types with RunConfig, so a bound is written once.
LearningRate = Annotated[float, Field(gt=0, le=10, description="SGD/Adam step size")]
BatchSize = Annotated[int, Field(ge=1, le=4096, description="examples per mini-batch")]
BnMomentum = Annotated[
    float | None,
    Field(
        gt=0,
        le=1,
        description="weight of the newest batch in BN's running averages; "
        "null means the cumulative (equal-weight) average",
    ),
]

BATCH_SIZE_ONE_REASON = (
    "BatchNorm cannot train on batch size 1: it normalizes each feature with the batch mean "
    "and variance, and one example gives a variance of 0 and x - mean = 0, so every output "
    "would be beta. Use batch size 2 or more for the variants that use batch statistics "
    f"({', '.join(k for k in VARIANTS if k in BATCH_STAT_VARIANTS)}); "
    f"{', '.join(k for k in VARIANTS if k not in BATCH_STAT_VARIANTS and k != 'plain')} "
    "do not use batch statistics and train at any batch size."
)


class RunConfig(BaseModel):
    """Everything that defines a run; frozen so a run's config never changes behind its back."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: DatasetName = "digits"
    data_dir: str | None = Field(
        None, description="directory with MNIST IDX files (dataset 'mnist' only)"
    )
    variants: tuple[Variant, ...] = Field(("plain", "bn"), min_length=1, max_length=len(VARIANTS))
    depth: int = Field(3, ge=1, le=8, description="hidden layers")
    width: int = Field(100, ge=1, le=1024, description="units per hidden layer")
    activation: Activation = "sigmoid"
    # Ioffe & Szegedy's Figure 1 network starts from small random Gaussian weights;
    # "default" keeps PyTorch's Kaiming-uniform init instead.
    init: Init = "gaussian"
    init_std: float = Field(0.1, gt=0, le=10, description="std of the Gaussian init")
    optimizer: Optimizer = "sgd"
    sgd_momentum: float = Field(0.9, ge=0, lt=1, description="momentum for 'momentum'")
    lr: LearningRate = 0.5
    # 60 is the batch size of the paper's MNIST experiment.
    batch_size: BatchSize = 60
    bn_momentum: BnMomentum = 0.1
    bn_eps: float = Field(1e-5, gt=0, le=1, description="epsilon of every normalizer")
    # Wu & He (2018) use 32 groups for wide conv layers; 4 divides the widths used here.
    gn_groups: int = Field(4, ge=1, le=1024, description="GroupNorm groups (must divide width)")
    # 20 cuts the paper's batch of 60 into three ghost batches.
    ghost_batch_size: int = Field(
        20, ge=2, le=4096, description="examples per ghost batch of ghost_bn"
    )
    # Ioffe (2017) relaxes r_max 1 -> 3 and d_max 0 -> 5 during the first part of training.
    brn_r_max: float = Field(3.0, ge=1, le=100, description="Batch Renorm's final r_max")
    brn_d_max: float = Field(5.0, ge=0, le=100, description="Batch Renorm's final d_max")
    brn_ramp: float = Field(
        0.3,
        ge=0,
        le=1,
        description="fraction of steps over which r_max and d_max relax from 1 and 0",
    )
    steps: int = Field(2000, ge=1, le=10_000_000)
    # One frame costs about as much as three training steps of the default network, so
    # every 50th step keeps training at >= 90% speed and still streams ~20 frames/s,
    # more than the page redraws (each chart at least twice a second).
    probe_every: int = Field(50, ge=1, le=100_000, description="steps between probed frames")
    test_every: int = Field(100, ge=1, le=1_000_000, description="steps between test evals")
    # One measurement costs about ten forward/backward passes per variant, ~12% of the
    # training time at every 100th step (ICS_EVERY_WHEN_ON). Off by default so a plain
    # run keeps >= 90% of its bare speed; the paper presets and the page turn it on.
    ics_every: int = Field(
        0, ge=0, le=1_000_000, description="steps between gradient ICS measurements (0: off)"
    )
    # Off by default: keeping the cumulative average adds a hook to every training step.
    compare_cumulative: bool = Field(
        False,
        description="also keep the equal-weight average of all batch statistics and score "
        "the test set with it (acc_cumulative), beside BN's moving average",
    )
    # 10 frames of the default probe_every (50) compares against the layer 500 steps back.
    drift_window: int = Field(10, ge=1, le=10_000, description="frames back for the windowed drift")
    bins: int = Field(64, ge=8, le=512, description="histogram bins per layer")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: Device = "cpu"

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, variants: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(variants)) != len(variants):
            raise ValueError("each variant may appear once")
        return variants

    @model_validator(mode="after")
    def _data_dir_only_for_mnist(self) -> RunConfig:
        if self.dataset == "mnist" and not self.data_dir:
            raise ValueError("data_dir: dataset 'mnist' needs the directory of its IDX files")
        return self

    @model_validator(mode="after")
    def _groups_divide_width(self) -> RunConfig:
        if "gn" in self.variants and self.width % self.gn_groups:
            raise ValueError(
                f"gn_groups: {self.gn_groups} does not divide width {self.width}; "
                "GroupNorm needs groups of equal size"
            )
        return self

    def trainable_at(self, batch_size: int) -> tuple[Variant, ...]:
        """The variants that can take a training step at this batch size."""
        if batch_size > 1:
            return self.variants
        return tuple(v for v in self.variants if v not in BATCH_STAT_VARIANTS)

    def memory_estimate_mb(self, batch_size: int | None = None) -> int:
        """Peak memory of this run's worker process in MiB (at `batch_size` if given), on the
        safe side of what real workers were measured to use (see WORKER_BASE_MB)."""
        examples, features, classes, base_mb = DATASET_SHAPES[self.dataset]
        batch = self.batch_size if batch_size is None else batch_size
        params = features * self.width + (self.depth - 1) * self.width**2
        params += self.width * classes + (self.depth + 1) * self.width * 4  # biases, γ, β
        copies = 2 + OPTIMIZER_COPIES[self.optimizer]  # weights, gradients, optimizer state
        per_unit = sum(UNIT_BYTES[_kind(v)] for v in self.variants)  # per example and unit
        if self.ics_every:
            copies += ICS_COPIES
            per_unit += ICS_UNIT_BYTES * len(self.variants)
        if self.device == "cuda":  # activations and weights live on the GPU
            base_mb, per_unit, copies = base_mb + CUDA_HOST_MB, 0, 0
        training = batch * self.depth * self.width * per_unit
        training += params * 4 * copies * len(self.variants)
        data = examples * features * 4
        peak = max(examples * features * LOAD_BYTES_PER_VALUE, data + training)
        return base_mb + math.ceil(peak / 2**20)

    def check_memory(self, limit_mb: int, changed: str | None = None) -> None:
        """ConfigError when this run is estimated to need more than limit_mb; `changed`
        names a live control whose new value (already in this config) would cross it."""
        estimate = self.memory_estimate_mb()
        if estimate <= limit_mb:
            return
        over = f"over this server's limit of {limit_mb} MB per run (max_run_memory_mb)"
        if changed is not None:
            value = getattr(self, changed)
            raise ConfigError(
                f"{changed}: at {value} the run would need about {estimate} MB of memory, {over}"
            )
        raise ConfigError(
            f"variants, depth, width, batch_size: the run would need about {estimate} MB of "
            f"memory, {over}; use fewer variants, a smaller network or a smaller batch"
        )


ICS_EVERY_WHEN_ON = 100

# ---- memory: what a run's worker process needs ----
# Calibrated against real workers (peak VmHWM and VmData from /proc, torch 2.13 CPU,
# Python 3.11, Linux): a width-1 network needs 291 MiB on spirals or MNIST (Python and
# torch) and 418-425 MiB on the datasets that import scikit-learn or mnist1d. Above that,
# at depth 4, width 1024, batch 1600 (6.55 M units of activation), each variant alone used
# per unit: plain 67 B, wn 68; ln 124, gn 128, rms 133; bn 127, bn_after 127, noisy_bn 140,
# brn 142, ghost_bn 164 (a probed step holds every tap of every layer of the frame, stacked
# and sorted with int64 indices). Checks, measured (estimate), MiB: depth 8, width 1024,
# batch 1600: plain 1167 (1232), plain + bn 2714 (3413), plain + bn + ln + wn 5015 (6151);
# all ten variants at depth 4, width 256, batch 512: 945 (1021); ghost_bn alone at depth 4,
# width 1024, batch 1600: 1368 (1387); MNIST at depth 4, width 1024, batch 1024, plain + bn,
# Adam, ICS every step: 1622 (1777); the default config: 397 (436).
# (examples, features, classes, MiB of the worker before any network)
DATASET_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "digits": (1797, 64, 10, 430),
    "moons": (2000, 2, 2, 430),
    "spirals": (2100, 2, 3, 300),
    "mnist1d": (5000, 40, 10, 430),
    # MNIST's own size; another IDX dataset in mnist_dir is held by the OS limit only.
    "mnist": (70_000, 784, 10, 300),
}
# Bytes per example and hidden unit for each kind of variant (from the registry: no
# normalizer, one that normalizes each example, one that uses batch statistics), above the
# largest measured of each kind.
UNIT_BYTES = {"plain": 70, "per_example": 140, "batch_stats": 170}
# Loading standardises in float64 from the raw bytes: 20.2 B per value at the peak (MNIST).
LOAD_BYTES_PER_VALUE = 22
# Extra copies of every parameter: momentum keeps one, Adam two; the gradient ICS measure
# copies the model and its gradients (3.3 copies measured, plus 3 B per unit).
OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "adam": 2}
ICS_COPIES = 4
ICS_UNIT_BYTES = 8
# Not measured (no GPU here): the host side of the CUDA runtime, on the safe side.
CUDA_HOST_MB = 1024


def _kind(variant: str) -> str:
    info = VARIANTS[variant]
    if info.norm is None:
        return "plain"
    return "batch_stats" if info.batch_stats else "per_example"


def describe(exc: ValidationError) -> str:
    """One line per problem, each starting with the field it is about."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) or '""' for part in error["loc"])  # "": a key named ""
        message = str(error["msg"]).removeprefix("Value error, ")
        # Cross-field checks have no location; their message starts with the field itself.
        lines.append(f"{field}: {message}" if field else message)
    return "; ".join(lines)
