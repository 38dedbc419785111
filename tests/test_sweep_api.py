"""Sweeps from the API: a sweep preset POSTed to /api/runs runs in a worker, streams its points,
is stored and listed like a run, stops on DELETE, and gives what run_sweep gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serverkit
from covshift.config import RunConfig
from covshift.presets import PRESETS
from covshift.runtime.sweep_worker import NO_CHANGES
from covshift.train.sweep import run_sweep
from covshift.web.app import create_app
from covshift.web.schemas import MAX_SWEEP_POINTS, RunRequest
from covshift.wire import SCHEMA_VERSION
from fastapi.testclient import TestClient
from pydantic import ValidationError
from serverkit import is_type, receive_until, wait_for

pytestmark = pytest.mark.slow  # the module's sweeps train in worker processes

_deadline = serverkit.per_test_deadline(90)

# Two points of a few steps on a small network: a sweep of ~1 s once its worker is up.
TINY: dict[str, Any] = {
    "preset": "batch-sweep",
    "dataset": "spirals",
    "variants": ["plain", "bn"],
    "depth": 2,
    "width": 16,
    "steps": 20,
    "test_every": 10,
    "bins": 16,
    "sweep_values": [4, 16],
}
SWEEP_KEYS = {"kind", "preset", "sweep"}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def client(logdir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(serverkit.settings(logdir, max_runs=2))) as client:
        yield client


@pytest.fixture(scope="module")
def finished(client: TestClient) -> dict[str, Any]:
    """The tiny sweep, run to its end: its RunInfo at the start and every message it sent."""
    created = client.post("/api/runs", json=TINY)
    assert created.status_code == 201, created.text
    info = created.json()
    with client.websocket_connect(f"/ws/runs/{info['id']}") as ws:
        end, seen = receive_until(ws, is_type("event", kind="state", state="finished"))
    return {"info": info, "messages": [*seen, end]}


def test_a_sweep_is_created_as_a_run_of_its_own_kind(finished: dict[str, Any]) -> None:
    config = finished["info"]["config"]
    assert config["kind"] == "sweep" and config["preset"] == "batch-sweep"
    assert config["sweep"] == {"field": "batch_size", "values": [4, 16]}
    # The preset's values under the fields given.
    assert config["activation"] == "sigmoid" and config["init"] == "gaussian"
    assert (config["dataset"], config["steps"], config["width"]) == ("spirals", 20, 16)


def test_points_stream_in_order_then_the_result_then_the_end(finished: dict[str, Any]) -> None:
    messages = finished["messages"]
    kinds = [m["type"] for m in messages if m["type"] != "event"]
    assert kinds == ["hello", "point", "point", "sweep"]
    hello = messages[0]
    assert (hello["kind"], hello["field"], hello["values"]) == ("sweep", "batch_size", [4, 16])
    assert hello["dataset"]["name"] == "spirals"
    points = [m for m in messages if m["type"] == "point"]
    assert [(p["index"], p["total"], p["value"]) for p in points] == [(0, 2, 4), (1, 2, 16)]
    assert all(p["field"] == "batch_size" and p["seconds"] > 0 for p in points)
    whole = next(m for m in messages if m["type"] == "sweep")
    assert whole["v"] == SCHEMA_VERSION and whole["preset"] == "batch-sweep"
    assert [p["value"] for p in whole["points"]] == [4, 16]


def test_the_results_equal_run_sweep_on_the_same_config(finished: dict[str, Any]) -> None:
    # The oracle: run_sweep called here, in this process, on the config the API validated.
    config = {k: v for k, v in finished["info"]["config"].items() if k not in SWEEP_KEYS}
    expected = run_sweep(RunConfig.model_validate(config), "batch_size", [4, 16])
    expected = json.loads(json.dumps(expected))  # as the wire carries it
    streamed = [m for m in finished["messages"] if m["type"] == "point"]
    for point, want in zip(streamed, expected["points"], strict=True):
        assert point["variants"] == want["variants"]
        assert point["batch_noise"] == want["batch_noise"]
        assert point["variants"]["bn"]["status"] == "trained"
        assert point["batch_noise"]["bn"][0]["reference"] == pytest.approx(point["value"] ** -0.5)
    whole = next(m for m in finished["messages"] if m["type"] == "sweep")
    assert whole["points"] == expected["points"]
    assert whole["dataset"] == expected["dataset"] and whole["config"] == expected["config"]


def test_a_finished_sweep_is_listed_stored_and_reported(
    client: TestClient, finished: dict[str, Any], logdir: Path
) -> None:
    run_id = finished["info"]["id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["state"] == "finished")
    [listed] = [run for run in client.get("/api/runs").json() if run["id"] == run_id]
    assert listed["step"] == 2 and listed["config"]["sweep"]["values"] == [4, 16]
    folder = logdir / run_id
    stored = json.loads((folder / "config.json").read_text())
    assert (stored["kind"], stored["preset"]) == ("sweep", "batch-sweep")
    lines = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert [m["type"] for m in lines] == ["hello", "event", "point", "point", "sweep", "event"]
    assert lines[-1]["state"] == "finished" and lines[0]["values"] == [4, 16]
    assert json.loads((folder / "state.json").read_text())["state"] == "finished"
    report = client.get(f"/api/runs/{run_id}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "std across batches" in report.text  # the batch-noise figure: a sweep's report
    assert "(2 of 2 points)" not in report.text  # the whole result, not the points so far


def test_a_running_sweep_shows_progress_takes_no_changes_and_stops(client: TestClient) -> None:
    body = {**TINY, "steps": 200, "sweep_values": [2, 4, 8, 16, 32]}
    created = client.post("/api/runs", json=body)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["step"] >= 1, timeout=60)
    assert client.get("/healthz").json()["active_runs"] == 1  # it holds a max_runs slot
    changed = client.patch(f"/api/runs/{run_id}", json={"lr": 0.1})
    assert changed.status_code == 422 and changed.json()["detail"] == NO_CHANGES
    stopped = client.delete(f"/api/runs/{run_id}")
    assert stopped.status_code == 200
    info = stopped.json()
    assert info["state"] == "stopped" and 1 <= info["step"] < 5
    assert client.get("/healthz").json()["active_runs"] == 0
    report = client.get(f"/api/runs/{run_id}/report")
    assert report.status_code == 200
    assert f"({info['step']} of 5 points)" in report.text


def test_without_sweep_values_a_sweep_takes_the_presets(client: TestClient) -> None:
    body = {k: v for k, v in TINY.items() if k != "sweep_values"} | {"preset": "lr-sweep"}
    created = client.post("/api/runs", json=body)
    assert created.status_code == 201, created.text
    sweep = created.json()["config"]["sweep"]
    assert sweep == {"field": "lr", "values": list(PRESETS["lr-sweep"].sweep.values)}  # type: ignore[union-attr]
    assert client.delete(f"/api/runs/{created.json()['id']}").status_code == 200


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([0, 4], "sweep_values: 0 is no batch_size"),  # one past batch_size's lower bound
        ([4, 4097], "sweep_values: 4097 is no batch_size"),
        ([16, 4], "increasing order"),
        ([4, 4], "increasing order"),
    ],
)
def test_sweep_values_out_of_bounds_are_422_naming_the_field(
    client: TestClient, values: list[float], words: str
) -> None:
    answer = client.post("/api/runs", json={**TINY, "sweep_values": values})
    assert answer.status_code == 422
    assert words in json.dumps(answer.json()["detail"])


def test_sweep_values_need_a_sweep_preset(client: TestClient) -> None:
    body = {**TINY, "preset": "noisy-bn"}
    answer = client.post("/api/runs", json=body)
    assert answer.status_code == 422 and "sweep_values: only a sweep preset" in answer.text


def test_the_number_of_points_is_bounded() -> None:
    values = [0.01 * (k + 1) for k in range(MAX_SWEEP_POINTS + 1)]
    RunRequest.model_validate({"preset": "lr-sweep", "sweep_values": values[:-1]})
    for wrong in (values, []):
        with pytest.raises(ValidationError, match="sweep_values"):
            RunRequest.model_validate({"preset": "lr-sweep", "sweep_values": wrong})
