"""GET /api/runs/{id}/doctor: the BN doctor's findings about an ended, a live (watched) and an
in-memory run equal `covshift doctor` on the same records; no hello or a damaged one is 409."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import serverkit
from covshift.config import RunConfig
from covshift.headless import run_headless
from covshift.reports.doctor import diagnose
from covshift.reports.runfile import read_run
from covshift.web.app import create_app
from covshift.web.lifecycle import RunInfo, RunState
from covshift.web.store import RunStore
from fastapi.testclient import TestClient
from serverkit import SMALL, strict_json, wait_for

pytestmark = pytest.mark.slow  # the module's run is trained for real (~3 s, once)
_deadline = serverkit.per_test_deadline(60)

ENDED = "e" * 22
LIVE = "l" * 22
BROKEN = "b" * 22
# Batch 4: BN normalizes over 4 examples, under the doctor's SMALL_BATCH of 16, so the run
# has at least one finding to compare (noisy_batch_stats), whatever else fires.
CONFIG = RunConfig(
    dataset="spirals",  # no scikit-learn import: a second sooner
    variants=("plain", "bn"),
    depth=2,
    width=16,
    batch_size=4,
    steps=60,
    probe_every=5,
    test_every=30,
    bins=8,
)


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A real run's frames.jsonl lines, written by `covshift run`'s own function."""
    out = tmp_path_factory.mktemp("headless")
    run_headless(CONFIG, out)
    return (out / "frames.jsonl").read_text(encoding="utf-8").splitlines()


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


def ended_run(logdir: Path, run_id: str, lines: list[str]) -> Path:
    """A finished run's folder as the server writes it: config, state and frames (created
    before the server starts: a running server picks up only watched runs' new folders)."""
    info = RunInfo(
        id=run_id,
        state=RunState.FINISHED,
        created=datetime(2025, 1, 1, tzinfo=timezone.utc),
        ended=datetime(2025, 1, 2, tzinfo=timezone.utc),
        config={},
        step=CONFIG.steps,
        lr=CONFIG.lr,
        batch_size=CONFIG.batch_size,
        bn_momentum=CONFIG.bn_momentum,
    )
    log = RunStore(logdir).create(info, CONFIG.model_dump(mode="json"))
    log.append(lines)
    log.close()
    return logdir / run_id


def watched_run(logdir: Path, run_id: str, text: str) -> Path:
    """A run folder another process is still writing (covshift.watch): heartbeat now."""
    folder = logdir / run_id
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"source": "watch", "variants": ["bn"]}))
    now = datetime.now(timezone.utc).isoformat()
    state = {
        "id": run_id,
        "state": "running",
        "created": now,
        "step": 0,
        "lr": None,
        "batch_size": None,
        "bn_momentum": None,
        "source": "watch",
        "pid": os.getpid(),
        "heartbeat": now,
    }
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "frames.jsonl").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def client(logdir: Path) -> Iterator[TestClient]:
    logdir.mkdir(exist_ok=True)
    with TestClient(create_app(serverkit.settings(logdir))) as client:
        yield client


def doctor(client: TestClient, run_id: str) -> Any:
    answer = client.get(f"/api/runs/{run_id}/doctor")
    assert answer.status_code == 200, answer.text
    return strict_json(answer.text)  # no bare NaN: a browser must parse it


def test_an_ended_runs_findings_are_the_doctors_on_its_file(logdir: Path, lines: list[str]) -> None:
    folder = ended_run(logdir, ENDED, lines)
    expected = [finding.to_json() for finding in diagnose(*read_run(folder))]
    with TestClient(create_app(serverkit.settings(logdir))) as client:
        answer = doctor(client, ENDED)
    assert answer == {"run": ENDED, "findings": expected}
    # Not an empty agreement: batch 4 is under 16 examples per normalization, and only the
    # batch-statistic variant is told so, with 1/sqrt(4) as the reference.
    noisy = [f for f in answer["findings"] if f["code"] == "noisy_batch_stats"]
    assert [f["variant"] for f in noisy] == ["bn"]
    assert noisy[0]["numbers"]["normalizing_batch"] == 4
    assert noisy[0]["numbers"]["reference"] == pytest.approx(0.5)
    assert noisy[0]["layer"] is None and noisy[0]["severity"] == "warn"


def test_a_live_run_is_read_from_its_file_so_far(
    client: TestClient, logdir: Path, lines: list[str], tmp_path: Path
) -> None:
    # Two thirds written, and the next line still being written (no newline yet).
    cut = 2 * len(lines) // 3
    text = "".join(line + "\n" for line in lines[:cut]) + lines[cut][:40]
    folder = watched_run(logdir, LIVE, text)
    wait_for(lambda: any(run["id"] == LIVE for run in client.get("/api/runs").json()), timeout=10)
    assert client.get(f"/api/runs/{LIVE}").json()["state"] == "running"
    answer = doctor(client, LIVE)
    assert answer["findings"] == [finding.to_json() for finding in diagnose(*read_run(folder))]
    # What was written so far is judged, not what the run holds once it has ended.
    whole = tmp_path / "whole.jsonl"
    whole.write_text("".join(line + "\n" for line in lines))
    assert answer["findings"] != [finding.to_json() for finding in diagnose(*read_run(whole))]


def test_no_hello_or_a_damaged_one_is_409_and_an_unknown_run_404(
    logdir: Path, lines: list[str]
) -> None:
    ended_run(logdir, BROKEN, [json.dumps({"v": 1, "type": "hello", "variants": 1}), *lines[1:]])
    watched_run(logdir, LIVE, "")  # its process has not written its hello yet
    with TestClient(create_app(serverkit.settings(logdir))) as client:
        damaged = client.get(f"/api/runs/{BROKEN}/doctor")
        assert damaged.status_code == 409 and "hello is damaged" in damaged.json()["detail"]
        early = client.get(f"/api/runs/{LIVE}/doctor")
        assert early.status_code == 409 and "no data yet" in early.json()["detail"]
        missing = client.get(f"/api/runs/{'x' * 22}/doctor")
        assert missing.status_code == 404 and "x" * 22 in missing.json()["detail"]


def test_a_run_kept_in_memory_is_diagnosed_from_its_history(tmp_path: Path) -> None:
    settings = serverkit.settings(
        tmp_path, demo_run=True, demo=RunConfig.model_validate({**SMALL, "batch_size": 4})
    )
    with TestClient(create_app(settings)) as client:
        (demo,) = client.get("/api/runs").json()
        assert demo["stored"] is False
        wait_for(lambda: client.get(f"/api/runs/{demo['id']}").json()["step"] > 100)
        assert client.delete(f"/api/runs/{demo['id']}").status_code == 200  # history stays put
        export = tmp_path / "export.jsonl"
        export.write_text(client.get(f"/api/runs/{demo['id']}/export").text)
        answer = doctor(client, demo["id"])
    expected = [finding.to_json() for finding in diagnose(*read_run(export))]
    assert answer == {"run": demo["id"], "findings": expected}
    assert any(f["code"] == "noisy_batch_stats" for f in answer["findings"])
