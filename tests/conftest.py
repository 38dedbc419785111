"""Shared fixtures: small, seeded, CPU-only configs so every unit test stays well under a second."""

from __future__ import annotations

import pytest
import torch
from covshift.config import RunConfig
from covshift.train.data import Dataset, load_dataset


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture
def small_config() -> RunConfig:
    return RunConfig(
        dataset="digits", depth=2, width=16, batch_size=32, steps=40, probe_every=1, test_every=10
    )
