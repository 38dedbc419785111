"""The HTTP API, fuzzed with Schemathesis from its own OpenAPI document: no 5xx, responses
as documented, bad bodies refused with 4xx, and no run corrupted by any of it.

Against a real `covshift serve` with max_runs 2, both slots held by the module's runs
while the fuzzer works: every valid POST is then answered 429 and spawns nothing (the
validation in front of it is what is fuzzed). A few valid POSTs start real runs at the
end, each stopped at once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import serverkit
from covshift.settings import Settings
from covshift.web.app import create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from liveserver import LiveServer, serve
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serverkit import SMALL, strict_json
from websockets.sync.client import connect

pytestmark = pytest.mark.slow  # a real server process and two workers training throughout

MAX_BODY: int = Settings.model_fields["max_body_bytes"].default
MAX_RUNS = 2
# Few frames, so exports and reports of the live runs stay small however long the fuzz.
RUN = {**SMALL, "probe_every": 500, "test_every": 1000}
EXAMPLES = 300  # per operation and mode (positive: fits the schema; negative: does not)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Every operation in the OpenAPI document, in its order (DELETE before export and report).
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, methods in create_app(Settings(demo_run=False)).openapi()["paths"].items()
    for method in methods
]


_deadline = serverkit.per_test_deadline(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    scratch = tmp_path_factory.mktemp("fuzz-api")
    with serve(scratch, "--no-demo", "--max-runs", str(MAX_RUNS)) as server:
        yield server


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def runs(server: LiveServer, http: requests.Session) -> dict[str, str]:
    """Both slots held: "live" trains throughout (never deleted by the fuzzer), "spare"
    is paused, and the fuzzer may change or stop it."""
    ids = {}
    for name in ("live", "spare"):
        created = http.post(f"{server.base}/api/runs", json=RUN)
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]
    spare = http.patch(f"{server.base}/api/runs/{ids['spare']}", json={"paused": True}, timeout=60)
    assert spare.json()["state"] == "paused", spare.text
    return ids


@pytest.fixture(scope="module")
def schema(server: LiveServer, http: requests.Session) -> Any:
    return schemathesis.openapi.from_dict(http.get(f"{server.base}/openapi.json").json())


def post(server: LiveServer, body: bytes | str, content_type: str | None) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return httpx.post(f"{server.base}/api/runs", content=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("x" * (MAX_BODY + 1), "application/json", 413),
        (json.dumps({"dataset": "moons", "pad": " " * MAX_BODY}), "application/json", 413),
        ("{not json", "application/json", 422),
        ("", "application/json", 422),
        (b"\x80{}", "application/json", 400),  # not UTF-8
        ("[" * 5000 + "]" * 5000, "application/json", 400),  # too deep for the parser
        ('{"depth": 1' + "0" * 5000 + "}", "application/json", 400),  # an int too long to read
        ('{"lr": NaN}', "application/json", 422),
        ('{"lr": Infinity}', "application/json", 422),
        ('{"dataset": "moons"}', "text/plain", 422),
        ('{"dataset": "moons"}', "application/x-www-form-urlencoded", 422),
        ("dataset=moons", "application/x-www-form-urlencoded", 422),
        ('{"dataset": "moons"}', "multipart/form-data; boundary=x", 422),
        ('{"dataset": "moons"}', "application/json; charset=latin-1", 429),  # valid: the limit
        ('{"dataset": "moons"}', None, 422),  # not read as JSON without the header
    ],
)
def test_bad_bodies_are_refused_with_4xx(
    server: LiveServer,
    runs: dict[str, str],
    body: str | bytes,
    content_type: str | None,
    status: int,
) -> None:
    response = post(server, body, content_type)
    assert response.status_code == status, response.text
    detail = strict_json(response.text)["detail"]
    assert isinstance(detail, str) or all(error["loc"] and error["msg"] for error in detail)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", '"NaN"', "1e999", "true"])
def test_non_finite_or_mistyped_changes_are_422_and_change_nothing(
    server: LiveServer, runs: dict[str, str], value: str
) -> None:
    url = f"{server.base}/api/runs/{runs['live']}"
    before = httpx.get(url).json()["lr"]
    body = f'{{"lr": {value}}}'
    response = httpx.patch(url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = strict_json(response.text)["detail"]
    assert error["loc"] == ["body", "lr"]
    assert httpx.get(url).json()["lr"] == before


def generated(
    operation: Any, mode: GenerationMode, run_ids: list[str]
) -> st.SearchStrategy[Case[Any]]:
    """Cases from the schema; for a path with a run id, some name a real run."""
    cases = operation.as_strategy(mode)
    if "{run_id}" not in operation.path:
        return cases  # type: ignore[no-any-return]
    real = st.sampled_from(run_ids).flatmap(
        lambda run_id: operation.as_strategy(mode, path_parameters={"run_id": run_id})
    )
    return st.one_of(cases, real)


def fuzz(
    operation: Any, mode: GenerationMode, run_ids: list[str], base: str, http: Any
) -> Counter[int]:
    """Run the operation's generated cases through every check; the statuses seen."""
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same cases every run: a failure reproduces
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=generated(operation, mode, run_ids))
    def check(case: Case[Any]) -> None:
        response = case.call(base_url=base, session=http, timeout=60)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)
        if mode.is_negative and operation.method.upper() in ("POST", "PATCH"):
            # Sharper than negative_data_rejection, which takes 429 for a refusal: a body
            # that breaks the schema must be refused for that, not let through to the limit.
            assert response.status_code in (400, 404, 413, 422), response.text

    check()
    return statuses


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_operation_fails_or_breaks_its_schema(
    server: LiveServer,
    http: requests.Session,
    runs: dict[str, str],
    schema: Any,
    label: str,
    record_property: Callable[[str, object], None],
) -> None:
    operation = schema.find_operation_by_label(label)
    # The live run must live on: DELETE may stop the spare only.
    targets = [runs["spare"]] if label.startswith("DELETE") else list(runs.values())
    modes = [GenerationMode.POSITIVE]
    if operation.query or operation.body:  # any string is a valid run id: nothing to negate
        modes.append(GenerationMode.NEGATIVE)
    for mode in modes:
        statuses = fuzz(operation, mode, targets, server.base, http)
        record_property(f"{mode.value} statuses", dict(sorted(statuses.items())))


def test_after_the_fuzzing_every_run_is_sound(
    server: LiveServer, http: requests.Session, runs: dict[str, str]
) -> None:
    listed = http.get(f"{server.base}/api/runs").json()
    assert {runs["live"], runs["spare"]} <= {run["id"] for run in listed}
    assert sum(run["state"] in ("created", "running", "paused") for run in listed) <= MAX_RUNS
    for run in listed:
        assert run["state"] in ("created", "running", "paused", "finished", "stopped", "failed")
        assert run["state"] != "failed", run  # nothing a client sent may break a worker
        assert 0 < run["lr"] <= 10 and 1 <= run["batch_size"] <= 4096
        assert run["bn_momentum"] is None or 0 < run["bn_momentum"] <= 1
        assert http.get(f"{server.base}/api/runs/{run['id']}").json()["id"] == run["id"]
        exported = http.get(f"{server.base}/api/runs/{run['id']}/export")
        assert exported.status_code == 200
        for line in exported.text.splitlines():
            strict_json(line)
    live = http.patch(f"{server.base}/api/runs/{runs['live']}", json={"paused": False}).json()
    assert live["state"] == "running"
    with connect(f"{server.ws_base}/ws/runs/{runs['live']}", max_size=None) as ws:
        assert strict_json(str(ws.recv(timeout=30)))["type"] == "hello"
        steps: list[int] = []
        while len(steps) < 2 or steps[-1] <= live["step"]:
            message = strict_json(str(ws.recv(timeout=30)))
            if message["type"] == "frame":
                steps.append(message["step"])
        assert steps == sorted(steps)


def test_valid_configs_start_runs_that_stop_cleanly(
    server: LiveServer, http: requests.Session, runs: dict[str, str], schema: Any
) -> None:
    """The request examples and a few generated configs, one free slot: each is 201 (then
    stopped at once) or a 422 naming a field checked across fields (e.g. gn_groups)."""
    http.delete(f"{server.base}/api/runs/{runs['spare']}")
    spec = http.get(f"{server.base}/openapi.json").json()
    bodies = spec["components"]["schemas"]["RunRequest"]["examples"]
    for body in bodies:
        created = http.post(f"{server.base}/api/runs", json=body)
        assert created.status_code == 201, created.text
        stopped = http.delete(f"{server.base}/api/runs/{created.json()['id']}").json()
        assert stopped["state"] == "stopped"

    @settings(max_examples=8, derandomize=True, database=None, deadline=None)
    @given(case=schema["/api/runs"]["POST"].as_strategy(GenerationMode.POSITIVE))
    def start(case: Case[Any]) -> None:
        response = case.call(base_url=server.base, session=http, timeout=60)
        case.validate_response(response, checks=CHECKS)
        assert response.status_code in (201, 422), response.text
        if response.status_code == 201:
            run_id = response.json()["id"]
            assert http.delete(f"{server.base}/api/runs/{run_id}").json()["state"] == "stopped"
        else:
            detail = response.json()["detail"]
            assert isinstance(detail, str) or all(error["loc"] for error in detail)

    start()
    assert http.get(f"{server.base}/healthz").json()["active_runs"] == 1  # the live run
