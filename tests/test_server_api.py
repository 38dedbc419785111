"""HTTP API through TestClient: CRUD, every bound and fault answered with its status code."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import serverkit
from covshift.cli import _default_to_serve, build_parser, main
from covshift.config import RunConfig
from covshift.web.app import create_app
from covshift.web.manager import RunManager
from covshift.web.security import CONTENT_SECURITY_POLICY
from covshift.web.serve import page_url, settings_from
from fastapi.testclient import TestClient
from pydantic import ValidationError
from serverkit import SMALL, wait_for

pytestmark = pytest.mark.slow  # the module's client trains real runs in worker processes


_deadline = serverkit.per_test_deadline(60)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    logdir = tmp_path_factory.mktemp("logs")
    settings = serverkit.settings(logdir, max_runs=2, max_body_bytes=4096)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def run_id(client: TestClient) -> str:
    """A run shared by the module's tests, training until the module ends."""
    created = client.post("/api/runs", json=SMALL)
    assert created.status_code == 201, created.text
    run_id: str = created.json()["id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["state"] == "running")
    return run_id


def manager(client: TestClient) -> RunManager:
    found: RunManager = client.app_state["manager"]
    return found


def test_health_page_and_assets(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "active_runs": 0}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'; script-src 'self'" in CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/favicon.ico").headers["content-type"] == "image/svg+xml"
    plotly = client.get("/vendor/plotly-basic.min.js")
    assert plotly.status_code == 200
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert len(plotly.content) > 1_000_000


def test_openapi_is_complete_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["RunRequest"]["examples"] and schemas["RunPatch"]["examples"]
    assert schemas["RunInfo"]["examples"]
    assert {"preset": "paper-fig1"} in schemas["RunRequest"]["examples"]
    assert "data_dir" not in schemas["RunRequest"]["properties"]  # no client paths
    paths = spec["paths"]
    assert {
        "/healthz",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/export",
        "/api/runs/{run_id}/report",
    } <= set(paths)
    assert set(paths["/api/runs/{run_id}"]) == {"get", "patch", "delete"}
    assert "429" in paths["/api/runs"]["post"]["responses"]


def test_create_list_get_and_change_a_run(client: TestClient, run_id: str) -> None:
    assert len(run_id) >= 22  # 128 random bits, URL-safe
    listed = client.get("/api/runs").json()
    assert [r["id"] for r in listed] == [run_id]
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["config"]["dataset"] == "spirals" and run["stored"] is True
    assert "data_dir" not in run["config"]

    changed = client.patch(f"/api/runs/{run_id}", json={"lr": 0.05, "bn_momentum": None})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["lr"], changed.json()["bn_momentum"]) == (0.05, None)
    paused = client.patch(f"/api/runs/{run_id}", json={"paused": True}).json()
    assert paused["state"] == "paused"
    time.sleep(0.2)
    assert client.get(f"/api/runs/{run_id}").json()["step"] == paused["step"]
    resumed = client.patch(f"/api/runs/{run_id}", json={"paused": False, "lr": 0.5}).json()
    assert (resumed["state"], resumed["lr"]) == ("running", 0.5)
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["step"] > paused["step"])


def test_unknown_runs_are_404(client: TestClient) -> None:
    missing = "x" * 22
    for response in (
        client.get(f"/api/runs/{missing}"),
        client.patch(f"/api/runs/{missing}", json={"lr": 0.1}),
        client.delete(f"/api/runs/{missing}"),
        client.get(f"/api/runs/{missing}/export"),
    ):
        assert response.status_code == 404
        assert missing in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"depth": 0}, "depth"),
        ({"depth": 9}, "depth"),
        ({"width": 1025}, "width"),
        ({"lr": 0}, "lr"),
        ({"batch_size": 4097}, "batch_size"),
        ({"variants": []}, "variants"),
        ({"variants": ["bn", "bn"]}, "variants"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"colour": "red"}, "colour"),
        ({"data_dir": "/etc"}, "data_dir"),
    ],
)
def test_invalid_run_configs_are_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]


def test_mnist_without_a_server_directory_is_422(client: TestClient) -> None:
    response = client.post("/api/runs", json={"dataset": "mnist"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("dataset:")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", 0.0),
        ("lr", math.nextafter(10.0, math.inf)),
        ("batch_size", 0),
        ("batch_size", 4097),
        ("batch_size", 2.5),
        ("bn_momentum", 0.0),
        ("bn_momentum", math.nextafter(1.0, math.inf)),
        ("paused", "sometimes"),
    ],
)
def test_each_patch_bound_one_step_past_is_422(
    client: TestClient, run_id: str, field: str, value: object
) -> None:
    response = client.patch(f"/api/runs/{run_id}", json={field: value})
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", field]]


def test_a_change_the_trainer_refuses_is_422_and_changes_nothing(
    client: TestClient, run_id: str
) -> None:
    # In bounds, but more than the 1680 training examples of spirals.
    response = client.patch(f"/api/runs/{run_id}", json={"batch_size": 2000, "lr": 0.3})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("batch_size:") and "1680 training examples" in detail
    run = client.get(f"/api/runs/{run_id}").json()
    assert (run["batch_size"], run["lr"]) == (60, 0.5)


def test_a_run_over_the_memory_limit_is_422_naming_the_limit_and_the_estimate(
    client: TestClient,
) -> None:
    body = {"variants": ["plain", "bn", "ln", "wn"], "depth": 8, "width": 1024, "batch_size": 1600}
    before = {run["id"] for run in client.get("/api/runs").json()}
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    estimate = RunConfig.model_validate(body).memory_estimate_mb()
    assert detail.startswith("variants, depth, width, batch_size:")
    assert f"about {estimate} MB" in detail
    assert "limit of 2048 MB per run (max_run_memory_mb)" in detail
    assert {run["id"] for run in client.get("/api/runs").json()} == before  # nothing started


def test_a_batch_size_change_over_the_memory_limit_is_422(client: TestClient) -> None:
    small = {**SMALL, "variants": ["plain"], "depth": 8, "width": 1024}
    created = client.post("/api/runs", json=small)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    try:
        response = client.patch(f"/api/runs/{run_id}", json={"batch_size": 4096})
        assert response.status_code == 422
        assert response.json()["detail"].startswith("batch_size: at 4096 the run would need")
        assert "(max_run_memory_mb)" in response.json()["detail"]
    finally:
        client.delete(f"/api/runs/{run_id}")


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_run_memory_mb", 255), ("command_timeout_s", 0), ("command_timeout_s", 3601)],
)
def test_each_limit_setting_one_step_past_its_bound_is_refused(
    tmp_path: Path, field: str, value: object
) -> None:
    with pytest.raises(ValidationError, match=field):
        serverkit.settings(tmp_path, **{field: value})


def test_more_runs_than_the_limit_is_429_and_delete_keeps_the_data(
    client: TestClient, run_id: str
) -> None:
    second = client.post("/api/runs", json=SMALL)
    assert second.status_code == 201
    refused = client.post("/api/runs", json=SMALL)
    assert refused.status_code == 429
    assert "the limit is 2" in refused.json()["detail"]

    second_id = second.json()["id"]
    stopped = client.delete(f"/api/runs/{second_id}")  # still loading: ended at once
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    assert client.delete(f"/api/runs/{second_id}").json()["state"] == "stopped"
    assert client.patch(f"/api/runs/{second_id}", json={"lr": 0.1}).status_code == 409
    assert client.get(f"/api/runs/{second_id}/export").status_code == 200
    assert second_id in {r["id"] for r in client.get("/api/runs").json()}


def test_oversized_bodies_are_413(client: TestClient) -> None:
    big = json.dumps({"dataset": "moons", "padding": "x" * 5000})
    declared = client.post("/api/runs", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert "4096" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it streams
        for _ in range(10):
            yield b" " * 1000

    streamed = client.post(
        "/api/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_a_foreign_host_header_is_refused(client: TestClient) -> None:
    # DNS rebinding: a hostile name that resolves to this machine.
    assert client.get("/api/runs", headers={"host": "evil.example"}).status_code == 400


def test_a_killed_worker_fails_its_run_only(client: TestClient, run_id: str) -> None:
    victim = client.post("/api/runs", json=SMALL).json()["id"]
    wait_for(lambda: client.get(f"/api/runs/{victim}").json()["state"] == "running")
    pid = manager(client).get(victim).pid
    assert pid is not None
    killed_at = datetime.now(timezone.utc)
    os.kill(pid, signal.SIGKILL)
    failed = wait_for(
        lambda: (r := client.get(f"/api/runs/{victim}").json())["state"] == "failed" and r
    )
    # The server's own time of the failure, so a slow poll here cannot blur it.
    assert datetime.fromisoformat(failed["ended"]) - killed_at < timedelta(seconds=2)
    assert "SIGKILL" in failed["error"]
    assert client.get("/healthz").json() == {"status": "ok", "active_runs": 1}
    survivor = client.get(f"/api/runs/{run_id}").json()
    assert survivor["state"] == "running"
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["step"] > survivor["step"])
    # The failure is on record.
    lines = client.get(f"/api/runs/{victim}/export").text.splitlines()
    assert json.loads(lines[-1])["state"] == "failed"


def test_a_live_run_is_on_disk_and_exports_while_training(client: TestClient, run_id: str) -> None:
    path = Path(manager(client).store.frames_path(run_id))
    lines = wait_for(lambda: path.read_text().count("\n") > 5 and path.read_text().splitlines())
    assert json.loads(lines[0])["type"] == "hello"
    exported = client.get(f"/api/runs/{run_id}/export").text.splitlines()
    assert len(exported) >= len(lines)
    assert [json.loads(line)["type"] for line in exported[:2]] == ["hello", "event"]
    table = client.get(f"/api/runs/{run_id}/export", params={"format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    assert table.text.splitlines()[0].startswith("step,epoch,lr,batch_size,variant,status,")
    assert client.get(f"/api/runs/{run_id}/export", params={"format": "xml"}).status_code == 422


def test_a_run_downloads_its_self_contained_html_report(client: TestClient, run_id: str) -> None:
    wait_for(lambda: manager(client).store.frames_path(run_id).read_text().count('"frame"') > 2)
    report = client.get(f"/api/runs/{run_id}/report")
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert report.headers["content-disposition"] == (
        f'attachment; filename="covshift-{run_id}-report.html"'
    )
    page = report.text
    assert page.startswith("<!DOCTYPE html>") or page.lower().startswith("<!doctype html>")
    assert all(variant in page for variant in ("plain", "bn"))
    assert "<script src" not in page.lower() and "Plotly" in page
    assert client.get(f"/api/runs/{'x' * 22}/report").status_code == 404


def test_a_preset_fills_the_fields_not_given(client: TestClient) -> None:
    body = {"preset": "noisy-bn", **SMALL, "steps": 40}
    created = client.post("/api/runs", json=body)
    assert created.status_code == 201, created.text
    config = created.json()["config"]
    assert config["variants"] == ["plain", "bn", "noisy_bn"]  # from the preset
    assert config["activation"] == "sigmoid" and config["batch_size"] == 60
    assert (config["dataset"], config["width"], config["steps"]) == ("spirals", 16, 40)
    assert "preset" not in config
    assert client.delete(f"/api/runs/{created.json()['id']}").status_code == 200


@pytest.mark.parametrize(("preset", "words"), [("fig9", "unknown preset")])
def test_unknown_presets_are_422(client: TestClient, preset: str, words: str) -> None:
    response = client.post("/api/runs", json={"preset": preset})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"][-1] == "preset" and words in error["msg"]


# ---- the command line ----


def test_serve_is_the_default_command_and_flags_beat_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COVSHIFT_MAX_RUNS", "7")
    monkeypatch.setenv("COVSHIFT_PORT", "9100")
    args = build_parser().parse_args(_default_to_serve(["--max-runs", "3", "--no-demo"]))
    assert args.command == "serve"
    chosen = settings_from(args)
    assert (chosen.max_runs, chosen.port, chosen.demo_run) == (3, 9100, False)
    assert page_url(chosen) == "http://127.0.0.1:9100/"
    assert build_parser().parse_args(_default_to_serve([])).command == "serve"
    assert build_parser().parse_args(_default_to_serve(["run"])).command == "run"


def test_serve_refuses_a_log_directory_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    code = main(["serve", "--no-browser", "--logdir", str(tmp_path / "a-file" / "logs")])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("covshift serve: error: log directory") and "not writable" in error
