"""Named experiments: a run config, and for sweeps the field and values swept, per paper figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Sweep:
    """A field of the run config and the values a sweep gives it, one short run each."""

    field: str
    values: tuple[float, ...]


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
        "batch 60, 50,000 steps; the last layer's sigmoid input as 15/50/85th percentiles.",
        {**_FIGURE_1, "steps": 50_000, "probe_every": 100, "test_every": 500},
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
}


def preset_config(name: str, explicit: dict[str, Any]) -> RunConfig:
    """The preset's config with every explicitly given value on top (explicit values win).

    paper-fig1 trains on MNIST when a data_dir with its files is given, else on digits.
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
