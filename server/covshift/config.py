"""Run configuration: every user-settable knob, its default and its bounds (only here)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .errors import ConfigError
from .variants import BATCH_STAT_VARIANTS, VARIANTS, Variant

Activation = Literal["sigmoid", "tanh", "relu"]
Init = Literal["gaussian", "default"]
Optimizer = Literal["sgd", "momentum", "adam"]
DatasetName = Literal["digits", "moons", "spirals", "mnist1d", "mnist"]
Device = Literal["cpu", "cuda"]
Arch = Literal["mlp", "cnn"]


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

# Enough for a lesson's phases; a longer list is a script, not a lesson.
MAX_SCHEDULE = 32


class ScheduledChange(BaseModel):
    """Live controls set at a given step, as if the page had sent them right before it."""

    # Strict as the API's bodies are (web.schemas.JsonTypes): "5" or true is not a step.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    step: int = Field(ge=1, description="the first training step that uses the new values")
    lr: LearningRate | None = None
    batch_size: BatchSize | None = None
    # Unset leaves BN's momentum alone; null (the cumulative average) has to be said.
    bn_momentum: BnMomentum = Field(None, validate_default=False)

    @field_validator("step", "batch_size", mode="before")
    @classmethod
    def _integral_float(cls, value: object) -> object:
        # JSON Schema's "integer" takes 2.0, and so does the API everywhere else.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @model_validator(mode="after")
    def _changes_something(self) -> ScheduledChange:
        if not self.changes():
            raise ValueError("an entry sets at least one of lr, batch_size, bn_momentum")
        return self

    @model_serializer(mode="wrap")
    def _only_what_is_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An unset bn_momentum must stay unset through a dump and a reload (the worker gets
        # its config as JSON): written out as null it would mean "the cumulative average".
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k == "step" or k in self.model_fields_set}

    def changes(self) -> dict[str, float | int | None]:
        """The controls this entry sets, by name (bn_momentum may be set to None)."""
        return {
            name: getattr(self, name)
            for name in ("batch_size", "bn_momentum", "lr")
            # None for lr or batch_size is "unset"; for bn_momentum, the cumulative average.
            if name in self.model_fields_set
            and (name == "bn_momentum" or getattr(self, name) is not None)
        }


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
    # The MLP is the network of the papers this reproduces; the CNN is where BN is used most.
    arch: Arch = Field(
        "mlp",
        description="network: 'mlp' (Linear layers) or 'cnn' (3x3 convolutions, 2x2 max "
        "pooling after every second block, global average pooling; image datasets only)",
    )
    depth: int = Field(3, ge=1, le=8, description="hidden layers (cnn: conv blocks)")
    width: int = Field(
        100, ge=1, le=1024, description="units per hidden layer (cnn: channels per conv block)"
    )
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
    # Live controls at fixed steps, applied as the page's changes are: a lesson's phases.
    schedule: tuple[ScheduledChange, ...] = Field(
        (),
        max_length=MAX_SCHEDULE,
        description="changes of lr, batch_size or bn_momentum applied right before given "
        'steps, e.g. [{"step": 500, "batch_size": 4}, {"step": 900, "lr": 0.1}]',
    )
    # Slow motion for the live server (the demo): the shift happens in the first few
    # thousand steps, which an unpaced run passes in seconds. `covshift run` ignores it.
    steps_per_s: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="in the dashboard, train at most this many steps per second (None: as "
        "fast as the machine goes); headless runs ignore it",
    )
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
    def _cnn_fits_the_data(self) -> RunConfig:
        if self.arch != "cnn":
            return self
        shape = IMAGE_SHAPES.get(self.dataset)
        if shape is None:
            raise ValueError(
                f"arch: 'cnn' needs image data ({' or '.join(IMAGE_SHAPES)}); "
                f"dataset '{self.dataset}' has no image grid, use arch 'mlp'"
            )
        check_cnn_depth(self.depth, shape[1], shape[2], self.dataset)
        return self

    @model_validator(mode="after")
    def _groups_divide_width(self) -> RunConfig:
        if "gn" in self.variants and self.width % self.gn_groups:
            raise ValueError(
                f"gn_groups: {self.gn_groups} does not divide width {self.width}; "
                "GroupNorm needs groups of equal size"
            )
        return self

    @model_validator(mode="after")
    def _schedule_within_run(self) -> RunConfig:
        steps = [change.step for change in self.schedule]
        for change in self.schedule:
            if change.step >= self.steps:
                raise ValueError(
                    f"schedule: step {change.step} is not before the run's end (steps {self.steps})"
                )
            size = change.batch_size
            if size is not None and not self.trainable_at(size):
                raise ValueError(f"schedule: at step {change.step}, {BATCH_SIZE_ONE_REASON}")
        if len(set(steps)) != len(steps):
            raise ValueError("schedule: one entry per step (put its changes together)")
        return self

    @property
    def largest_batch_size(self) -> int:
        """The largest batch the run trains on: its own or a scheduled one."""
        return max([self.batch_size, *(c.batch_size or 0 for c in self.schedule)])

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
        if self.arch == "cnn":
            return self._cnn_memory_estimate_mb(batch)
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

    def _cnn_memory_estimate_mb(self, batch: int) -> int:
        """The CNN's peak memory. Every value of a conv block's output (channels x H x W per
        example) is one unit of the MLP's calibration, held by the same taps and sorts; on
        top of that, per example, the transient im2col buffer of the largest convolution (9
        input values per output position, float32), the pooled maps with their int64 argmax
        indices, and the fixed-data probe's forward of PROBE_EXAMPLES examples (one variant at
        a time, keeping only activation inputs). On the safe side of measured workers (see
        the numbers above PROBE_EXAMPLES)."""
        examples, features, classes, base_mb = DATASET_SHAPES[self.dataset]
        channels, height, width = IMAGE_SHAPES[self.dataset]
        sizes = cnn_spatial(self.depth, height, width)
        units = sum(self.width * h * w for h, w in sizes)
        inputs = [channels] + [self.width] * (self.depth - 1)
        im2col = max(9 * c * h * w for c, (h, w) in zip(inputs, sizes, strict=True)) * 4
        pooled = sum(self.width * (h // 2) * (w // 2) for h, w in cnn_pooled(sizes)) * (4 + 8)
        params = 9 * channels * self.width + (self.depth - 1) * 9 * self.width**2
        params += self.width * classes + (self.depth + 1) * self.width * 4  # biases, γ, β
        copies = 2 + OPTIMIZER_COPIES[self.optimizer]
        per_unit = math.ceil(sum(UNIT_BYTES[_kind(v)] for v in self.variants) * CNN_UNIT_SHARE)
        if self.ics_every:
            copies += ICS_COPIES
            per_unit += ICS_UNIT_BYTES * len(self.variants)
        if self.device == "cuda":  # activations and weights live on the GPU
            base_mb, per_unit, copies, im2col, pooled = base_mb + CUDA_HOST_MB, 0, 0, 0, 0
        per_example = units * per_unit + (im2col + pooled) * len(self.variants)
        training = batch * per_example + params * 4 * copies * len(self.variants)
        if self.device != "cuda":
            training += PROBE_EXAMPLES * (units * PROBE_UNIT_BYTES + im2col + pooled)
        data = examples * features * 4
        peak = max(examples * features * LOAD_BYTES_PER_VALUE, data + training)
        return base_mb + math.ceil(peak / 2**20)

    def check_memory(self, limit_mb: int, changed: str | None = None) -> None:
        """ConfigError when this run is estimated to need more than limit_mb; `changed`
        names a live control whose new value (already in this config) would cross it."""
        # A scheduled batch size is a change the run will make: it must fit from the start.
        estimate = self.memory_estimate_mb(self.largest_batch_size)
        if estimate <= limit_mb:
            return
        over = f"over this server's limit of {limit_mb} MB per run (max_run_memory_mb)"
        if changed is not None:
            value = getattr(self, changed)
            raise ConfigError(
                f"{changed}: at {value} the run would need about {estimate} MB of memory, {over}"
            )
        fields = "variants, depth, width, batch_size"
        if self.largest_batch_size > self.batch_size:
            fields += ", schedule"
        raise ConfigError(
            f"{fields}: the run would need about {estimate} MB of "
            f"memory, {over}; use fewer variants, a smaller network or a smaller batch"
        )


ICS_EVERY_WHEN_ON = 100

# ---- the CNN's shape: which datasets are images, where it pools ----
# (channels, height, width) of the datasets a CNN can take; the loaded Dataset says the same.
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}
# 2x2 max pooling after every second conv block, as VGG pools after each pair: two 3x3
# convolutions at each resolution see 5x5 of it before it halves.
POOL_EVERY = 2


def cnn_spatial(depth: int, height: int, width: int) -> list[tuple[int, int]]:
    """Each conv block's output size (H, W), before the pooling that may follow it."""
    sizes = []
    for block in range(depth):
        sizes.append((height, width))
        if (block + 1) % POOL_EVERY == 0:
            height, width = height // 2, width // 2
    return sizes


def cnn_pooled(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The sizes of the blocks that a 2x2 max pooling follows."""
    return [size for block, size in enumerate(sizes) if (block + 1) % POOL_EVERY == 0]


def max_cnn_depth(height: int, width: int) -> int:
    """The most conv blocks whose last pooling still leaves at least 2x2 positions for the
    global average: POOL_EVERY blocks per halving (8x8: 4 blocks, 28x28: 6)."""
    side, halvings = min(height, width), 0
    while side // 2 >= 2:
        side, halvings = side // 2, halvings + 1
    return max(1, POOL_EVERY * halvings)


def check_cnn_depth(depth: int, height: int, width: int, dataset: str) -> None:
    """ValueError naming `depth` when the CNN would pool the image below 2x2."""
    most = max_cnn_depth(height, width)
    if depth > most:
        raise ValueError(
            f"depth: a cnn on {dataset}'s {height}x{width} images takes at most {most} conv "
            f"blocks (2x2 max pooling after every {POOL_EVERY} blocks must leave at least 2x2 "
            f"positions), got {depth}"
        )


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
# Adam, ICS every step: 1622 (1777); the default config: 397 (436). Those were measured
# before workers fixed glibc's mmap threshold (runtime/worker.py): since, freed tensors
# leave the process, and the ten variants at depth 2, width 256, batch 1024 peak at
# 870 MiB every start (1011) where they had peaked at 933 to 1148 MiB from start to start.
# A worker loaded ahead of its run (runtime/process.py) may have scikit-learn loaded
# whatever the dataset, so spirals and MNIST count it too.
# (examples, features, classes, MiB of the worker before any network)
DATASET_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "digits": (1797, 64, 10, 430),
    "moons": (2000, 2, 2, 430),
    "spirals": (2100, 2, 3, 430),
    "mnist1d": (5000, 40, 10, 430),
    # MNIST's own size; another IDX dataset in mnist_dir is held by the OS limit only.
    "mnist": (70_000, 784, 10, 430),
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
# The fixed-data drift's probe set (covshift.train.fixed_drift.PROBE_SIZE), through one
# variant at a time: for a CNN its forward is as large as a training batch's. It keeps each
# layer's activation input and copies it about four times on its way to the sort (channel
# rows, one transfer, float32 NumPy, the sorted copies): 32 B per value covers that.
PROBE_EXAMPLES = 256
PROBE_UNIT_BYTES = 32
# A conv map's value costs less than an MLP unit's calibrated bytes (0.4 to 0.6 of them in
# the workers below); 0.8 keeps the estimate on the safe side. Peak VmHWM on digits, MiB
# (estimate): the default config with arch cnn, depth 4, plain + bn: 598 (827); depth 4,
# width 64, batch 512, plain + bn: 1181 (1671); all ten variants at depth 2, width 32,
# batch 256: 1523 (1806).
CNN_UNIT_SHARE = 0.8


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
