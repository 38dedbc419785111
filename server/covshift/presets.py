"""Named experiments: a run config, and for sweeps the field and values swept, per paper figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .config import ICS_EVERY_WHEN_ON, RunConfig

# Ioffe & Szegedy (2015), Sec. 4.1: 3 fully connected hidden layers of 100 sigmoid units,
# small random Gaussian initial weights, batches of 60, BN before each sigmoid.
_FIGURE_1: dict[str, Any] = {
    "dataset": "digits",
    "variants": ("plain", "bn"),
    "depth": 3,
    "width": 100,
    "activation": "sigmoid",
    "init": "gaussian",
    "init_std": 0.1,
    "lr": 0.5,
    "batch_size": 60,
    "ics_every": ICS_EVERY_WHEN_ON,
    "compare_cumulative": True,
}


# How a derived field follows the swept value v, from its value at the reference point r:
# "linear" multiplies it by v / r, "inverse" by r / v (integer fields rounded, at least 1).
Scaling = Literal["linear", "inverse"]


# Wu & He (2018) train at 32 images per worker with lr 0.1 * B / 32 and momentum 0.9; the
# conv sweep's base values hold at that reference batch. Its lr is 0.3: in 4 epochs 0.1
# left batch 32 far from trained (GroupNorm at 40% test accuracy, measured).
CONV_REFERENCE_BATCH = 32
# 30 epochs: at 4 the batch-32 point had 180 steps and every normalizer's error fell from
# batch 32 to 2 for that reason alone. At 30, from batch 32 to 2, BN's error rises by more
# than GN's on every one of seeds 0-2 (BN +0.1, GN -4.0 points in the mean), GN is best at
# the smallest batches and BN at 4-16: Wu & He's shape, far from their size. ~100 s per
# seed on one core (docs/experiments.md).
CONV_SWEEP_EPOCHS = 30
DIGITS_TRAIN = 1437  # digits' training split (train.data): steps are epochs of it
_CONV_SWEEP: dict[str, Any] = {
    "dataset": "digits",
    "arch": "cnn",
    # plain is the reference line; ln (one group) cost a third more time and says what gn does.
    "variants": ("plain", "bn", "gn"),
    # Two conv blocks at 8x8, then one 2x2 pooling: at batch 2 BN still pools 2 x 64 values
    # per channel, so what it suffers from is noisy statistics, not the MLP's +-1 degeneracy.
    "depth": 2,
    "width": 16,
    "activation": "relu",
    "init": "default",
    "optimizer": "momentum",
    "lr": 0.3,
    "batch_size": CONV_REFERENCE_BATCH,
    "steps": round(CONV_SWEEP_EPOCHS * DIGITS_TRAIN / CONV_REFERENCE_BATCH),
    # Tested at step 0 and at the last step only: a point's number is its final accuracy.
    "test_every": 1_000_000,
    "ics_every": 0,
}


@dataclass(frozen=True)
class Scale:
    """Config fields derived from the swept value: the base config holds their values at
    `reference`, and each point scales them by its own value (e.g. lr linear in the batch
    size, steps inverse to it, so every point trains the same epochs at the same lr per
    example)."""

    reference: float
    fields: tuple[tuple[str, Scaling], ...]

    def derive(self, base: RunConfig, value: float) -> dict[str, Any]:
        """The derived fields' values at this point (not validated: the point's config is)."""
        derived: dict[str, Any] = {}
        for name, scaling in self.fields:
            factor = value / self.reference if scaling == "linear" else self.reference / value
            start = getattr(base, name)
            # Integer fields (steps) stay integers; a step count of 0 would train nothing.
            derived[name] = (
                max(1, round(start * factor)) if isinstance(start, int) else start * factor
            )
        return derived

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "fields": dict(self.fields)}


@dataclass(frozen=True)
class Sweep:
    """A field of the run config and the values a sweep gives it, one short run each;
    `scale` derives other fields from the swept value."""

    field: str
    values: tuple[float, ...]
    scale: Scale | None = None


def point_config(
    base: RunConfig, field: str, value: float, scale: Scale | None = None
) -> RunConfig:
    """One sweep point's config: base with `field` set to `value` and the scaled fields derived,
    validated as any config is (a derived value past a bound is refused naming its field)."""
    derived = scale.derive(base, value) if scale is not None else {}
    return RunConfig.model_validate({**base.model_dump(), field: value, **derived})


@dataclass(frozen=True)
class Preset:
    """A named experiment: what it reproduces and the config values it sets."""

    title: str
    description: str
    values: dict[str, Any] = field(default_factory=dict)
    sweep: Sweep | None = None


PRESETS: dict[str, Preset] = {
    "paper-fig1": Preset(
        "Ioffe & Szegedy (2015), Figure 1",
        "3x100 sigmoid MLP with and without BN before each sigmoid (Linear without bias), "
        "batch 60, 50,000 steps; the last layer's sigmoid input as 15/50/85th percentiles. "
        "On MNIST-1D (MNIST with --data-dir), where both nets learn for ~15,000 steps; on "
        "digits both have learned by step ~1,000.",
        # MNIST-1D: 4,000 training examples, so 50,000 steps are 750 epochs; plain's training
        # accuracy reaches 1.0 at ~20,000 steps, BN's at ~10,000 (seed 0).
        {**_FIGURE_1, "dataset": "mnist1d", "steps": 50_000, "probe_every": 100, "test_every": 500},
    ),
    "noisy-bn": Preset(
        "Santurkar et al. (2018), Figure 2: BN with injected distribution shift",
        "plain, BN and BN followed by noise whose mean and scale change every step: more "
        "distribution shift than plain, yet it trains like BN.",
        {
            **_FIGURE_1,
            "variants": ("plain", "bn", "noisy_bn"),
            "steps": 5_000,
            "probe_every": 50,
        },
    ),
    "batch-sweep": Preset(
        "Batch size (Wu & He 2018, Table 2)",
        "The same number of steps at each batch size: final test accuracy per normalizer, and "
        "how noisy BN's batch statistics are against 1/sqrt(B).",
        {
            **_FIGURE_1,
            "variants": ("plain", "bn", "ln", "gn", "brn"),
            "steps": 1_000,
            "test_every": 250,
            "ics_every": 0,
        },
        Sweep("batch_size", (2, 4, 8, 16, 32, 64, 128, 256)),
    ),
    "lr-sweep": Preset(
        "Learning rate: BN trains where plain diverges (Ioffe & Szegedy 2015, Sec. 3.3)",
        "ReLU MLP with PyTorch's default init, the same steps at each learning rate; a "
        "non-finite loss or a loss blow-up is marked, never a crash.",
        {
            **_FIGURE_1,
            "activation": "relu",
            "init": "default",
            "steps": 500,
            "test_every": 250,
            "ics_every": 0,
        },
        Sweep("lr", (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)),
    ),
    "conv-batch-sweep": Preset(
        "Batch size on a conv net (Wu & He 2018, Table 2)",
        "conv -> norm -> ReLU blocks with 2x2 max pooling (BN's statistics pool over batch and "
        "positions); the same epochs at every batch size and the learning rate scaled linearly "
        "with it (Goyal et al. 2017), as Wu & He trained: final test accuracy per normalizer, "
        "plain as the reference. Run it over seeds (--seeds 0,1,2) for the spread.",
        _CONV_SWEEP,
        Sweep(
            "batch_size",
            (2, 4, 8, 16, 32),
            Scale(CONV_REFERENCE_BATCH, (("lr", "linear"), ("steps", "inverse"))),
        ),
    ),
}


def preset_config(name: str, explicit: dict[str, Any]) -> RunConfig:
    """The preset's config with every explicitly given value on top (explicit values win).

    paper-fig1 trains on MNIST when a data_dir with its files is given, else on MNIST-1D.
    """
    values = dict(PRESETS[name].values)
    if "data_dir" in explicit and "dataset" not in explicit and name == "paper-fig1":
        values["dataset"] = "mnist"
    return RunConfig.model_validate({**values, **explicit})


def dataset_note(config: RunConfig) -> str:
    """An honest label of the data a paper preset ran on."""
    if config.dataset == "mnist":
        return "on MNIST, as in the paper"
    return (
        f"on {config.dataset}, not the paper's MNIST "
        "(pass --data-dir with the MNIST IDX files to train on MNIST)"
    )
