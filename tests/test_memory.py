"""A run's memory: the estimate (RunConfig.memory_estimate_mb) against real workers, its tables
against the datasets, and the refusal that names the limit."""

from __future__ import annotations

import time
import typing
from typing import Any

import pytest
import serverkit
from covshift.config import DATASET_SHAPES, DatasetName, RunConfig
from covshift.errors import ConfigError
from covshift.runtime.handle import WorkerHandle
from covshift.runtime.messages import Job
from covshift.train.data import load_dataset
from covshift.variants import VARIANTS

_deadline = serverkit.per_test_deadline(60)

ALL = list(VARIANTS)


def test_every_dataset_has_its_figures() -> None:
    assert set(DATASET_SHAPES) == set(typing.get_args(DatasetName))


@pytest.mark.parametrize("name", ["digits", "moons", "spirals", "mnist1d"])
def test_dataset_shapes_are_the_loaded_datasets(name: DatasetName) -> None:
    data = load_dataset(name)
    examples, features, classes, _ = DATASET_SHAPES[name]
    assert (examples, features, classes) == (
        len(data.x_train) + len(data.x_test),
        data.n_features,
        data.n_classes,
    )


def test_the_estimate_grows_with_what_a_worker_holds() -> None:
    base = RunConfig(dataset="spirals", depth=4, width=256, batch_size=128)
    estimate = base.memory_estimate_mb()
    for bigger in (
        {"batch_size": 256},
        {"width": 512},
        {"depth": 8},
        {"variants": ("plain", "bn", "ln")},
        {"optimizer": "adam"},
        {"ics_every": 100},
    ):
        assert RunConfig.model_validate({**base.model_dump(), **bigger}).memory_estimate_mb() > (
            estimate
        ), bigger


def test_a_config_one_mb_over_the_limit_is_refused_naming_the_limit_and_the_estimate() -> None:
    config = RunConfig(depth=8, width=1024, batch_size=1600)
    estimate = config.memory_estimate_mb()
    config.check_memory(estimate)  # at the limit: accepted
    with pytest.raises(ConfigError) as refused:
        config.check_memory(estimate - 1)
    message = str(refused.value)
    assert message.startswith("variants, depth, width, batch_size:")
    assert f"about {estimate} MB" in message
    assert f"limit of {estimate - 1} MB per run (max_run_memory_mb)" in message
    with pytest.raises(ConfigError, match=r"^batch_size: at 1600 the run would need about"):
        config.check_memory(estimate - 1, changed="batch_size")


def _peak_mb(overrides: dict[str, Any], frames: int = 3) -> int:
    """A real worker's peak resident memory (VmHWM, MiB) over its first probed steps; one
    loaded ahead (scikit-learn included) before it is given the run, as a ready worker is."""
    config = RunConfig.model_validate({"steps": 1000, "probe_every": 1, **overrides})
    worker = WorkerHandle()
    assert worker.pid is not None
    serverkit.wait_for(lambda: serverkit.idle(worker.pid), timeout=40, every=0.5)
    worker.start(Job(config.model_dump_json()))
    try:
        seen, end = 0, time.monotonic() + 40
        while seen < frames and time.monotonic() < end:
            outputs = worker.read(0.1)
            assert outputs is not None, "the worker ended"
            seen += sum(kind == "frame" for o in outputs for kind, _ in o.messages)
        assert seen >= frames, "no frames in time"
        with open(f"/proc/{worker.pid}/status", encoding="ascii") as status:
            found = [line for line in status if line.startswith("VmHWM:")]
        return int(found[0].split()[1]) // 1024
    finally:
        worker.end(0.0)
        worker.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        # every variant: the per-unit figures of the three kinds, at a size where they count
        {"dataset": "spirals", "depth": 2, "width": 256, "batch_size": 1024, "variants": ALL},
        {"dataset": "digits", "variants": ["plain", "bn"], "ics_every": 1, "optimizer": "adam"},
    ],
)
def test_the_estimate_is_on_the_safe_side_of_a_real_worker(overrides: dict[str, Any]) -> None:
    estimate = RunConfig.model_validate(overrides).memory_estimate_mb()
    measured = _peak_mb(overrides)
    assert measured <= estimate <= 1.5 * measured + 100, (measured, estimate)


def test_a_demo_over_the_memory_limit_is_skipped_and_the_server_serves(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from covshift.web.app import create_app
    from fastapi.testclient import TestClient

    settings = serverkit.settings(tmp_path, demo_run=True, max_run_memory_mb=256)
    assert settings.demo.memory_estimate_mb() > 256  # the digits demo does not fit
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/runs").json() == []
    assert "the demo run was not started" in caplog.text
