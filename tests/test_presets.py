"""Presets: every one validates, explicit values override it, paper-fig1 says which data it used."""

from __future__ import annotations

import pytest
from covshift.config import RunConfig
from covshift.presets import PRESETS, dataset_note, preset_config


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_config(name: str) -> None:
    config = preset_config(name, {})
    assert isinstance(config, RunConfig)
    sweep = PRESETS[name].sweep
    if sweep is not None:
        for value in sweep.values:
            RunConfig.model_validate({**config.model_dump(), sweep.field: value})


def test_paper_figure_1_is_the_papers_network() -> None:
    config = preset_config("paper-fig1", {})
    assert (config.depth, config.width, config.activation) == (3, 100, "sigmoid")
    assert (config.batch_size, config.steps, config.init) == (60, 50_000, "gaussian")
    assert config.variants == ("plain", "bn")


def test_explicit_values_override_the_preset() -> None:
    config = preset_config("paper-fig1", {"steps": 200, "lr": 0.1})
    assert (config.steps, config.lr, config.width) == (200, 0.1, 100)


def test_paper_figure_1_uses_mnist_only_when_its_files_are_given() -> None:
    assert preset_config("paper-fig1", {}).dataset == "mnist1d"
    with_files = preset_config("paper-fig1", {"data_dir": "/data/mnist"})
    assert with_files.dataset == "mnist"
    assert "not the paper's MNIST" in dataset_note(preset_config("paper-fig1", {}))
    assert dataset_note(with_files) == "on MNIST, as in the paper"
    # an explicit dataset wins over the guess
    assert preset_config("paper-fig1", {"data_dir": "/x", "dataset": "digits"}).dataset == "digits"
