"""Every bound of the run config rejects one step past it, with a message naming the field."""

from __future__ import annotations

import pytest
from covshift.config import RunConfig, describe
from covshift.web.schemas import RunPatch
from pydantic import ValidationError

# (field, last valid value, first invalid value) on each side of every bound
BOUNDS = [
    ("depth", 1, 0),
    ("depth", 8, 9),
    ("width", 1, 0),
    ("width", 1024, 1025),
    ("batch_size", 1, 0),
    ("batch_size", 4096, 4097),
    ("lr", 10.0, 10.000001),
    ("lr", 1e-12, 0.0),
    ("init_std", 10.0, 10.5),
    ("init_std", 1e-9, 0.0),
    ("sgd_momentum", 0.0, -0.01),
    ("sgd_momentum", 0.99, 1.0),
    ("bn_momentum", 1.0, 1.01),
    ("bn_momentum", 1e-6, 0.0),
    ("bn_eps", 1.0, 1.5),
    ("bn_eps", 1e-12, 0.0),
    ("steps", 1, 0),
    ("steps", 10_000_000, 10_000_001),
    ("probe_every", 1, 0),
    ("probe_every", 100_000, 100_001),
    ("test_every", 1, 0),
    ("test_every", 1_000_000, 1_000_001),
    ("bins", 8, 7),
    ("bins", 512, 513),
    ("seed", 0, -1),
    ("seed", 2**31 - 1, 2**31),
    ("gn_groups", 1, 0),
    ("gn_groups", 1024, 1025),
    ("ghost_batch_size", 2, 1),
    ("ghost_batch_size", 4096, 4097),
    ("brn_r_max", 1.0, 0.99),
    ("brn_r_max", 100.0, 100.5),
    ("brn_d_max", 0.0, -0.01),
    ("brn_d_max", 100.0, 100.5),
    ("brn_ramp", 0.0, -0.01),
    ("brn_ramp", 1.0, 1.01),
    ("ics_every", 0, -1),
    ("ics_every", 1_000_000, 1_000_001),
    ("drift_window", 1, 0),
    ("drift_window", 10_000, 10_001),
]


@pytest.mark.parametrize(("field", "valid", "invalid"), BOUNDS)
def test_each_bound_accepts_its_edge_and_rejects_one_past(
    field: str, valid: float, invalid: float
) -> None:
    assert getattr(RunConfig(**{field: valid}), field) == valid
    with pytest.raises(ValidationError) as caught:
        RunConfig(**{field: invalid})
    assert describe(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(lr=value)
    assert describe(caught.value).startswith("lr: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [("activation", "gelu"), ("optimizer", "lbfgs"), ("dataset", "cifar"), ("device", "tpu")],
)
def test_unknown_choices_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(**{field: value})
    assert describe(caught.value).startswith(f"{field}: ")


def test_variants_must_be_known_unique_and_present() -> None:
    for variants in [(), ("plain", "plain"), ("plain", "bogus")]:
        with pytest.raises(ValidationError) as caught:
            RunConfig(variants=variants)
        assert describe(caught.value).startswith("variants")


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(learning_rate=0.1)  # type: ignore[call-arg]
    assert "learning_rate" in describe(caught.value)


def test_mnist_needs_a_directory() -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(dataset="mnist")
    assert describe(caught.value).startswith("data_dir: ")


def test_batch_size_one_leaves_only_variants_without_batch_statistics() -> None:
    config = RunConfig(variants=("plain", "bn", "bn_after"))
    assert config.trainable_at(1) == ("plain",)
    assert config.trainable_at(2) == ("plain", "bn", "bn_after")
    every = RunConfig(
        variants=("plain", "bn", "bn_after", "ln", "gn", "wn", "brn", "noisy_bn", "ghost_bn")
    )
    assert every.trainable_at(1) == ("plain", "ln", "gn", "wn")


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("lr", 0),
        ("lr", 11),
        ("lr", "fast"),
        ("batch_size", 0),
        ("batch_size", 4097),
        ("batch_size", 2.5),
        ("bn_momentum", 0),
        ("bn_momentum", 1.5),
    ],
)
def test_live_controls_share_the_config_bounds(field: str, bad: object) -> None:
    # A live change is validated once, where it enters (PATCH and the websocket's control
    # message), with the very types RunConfig's fields use.
    with pytest.raises(ValidationError) as refused:
        RunPatch.model_validate({field: bad})
    assert refused.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError):
        RunConfig.model_validate({field: bad})


def test_live_controls_accept_valid_values() -> None:
    changes = RunPatch.model_validate({"lr": 0.25, "batch_size": 4096, "bn_momentum": None})
    assert changes.changes() == {"lr": 0.25, "batch_size": 4096, "bn_momentum": None}
