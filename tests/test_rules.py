"""GET /api/rules: what the page enforces comes from the config model, presets and registry."""

from __future__ import annotations

import json
from pathlib import Path

import serverkit
from covshift.config import RunConfig
from covshift.presets import PRESETS
from covshift.variants import VARIANTS
from covshift.web.app import create_app
from covshift.web.rules import rules
from fastapi.testclient import TestClient

FIXTURE = Path(__file__).parent / "js" / "rules.json"


def test_the_endpoint_says_what_the_config_model_enforces(tmp_path: Path) -> None:
    with TestClient(create_app(serverkit.settings(tmp_path))) as client:
        answer = client.get("/api/rules")
    assert answer.status_code == 200
    body = answer.json()
    fields = RunConfig.model_fields
    assert body["defaults"]["lr"] == fields["lr"].default
    assert body["defaults"]["batch_size"] == fields["batch_size"].default
    assert body["bounds"]["lr"] == {
        "min": 0,
        "minOpen": True,
        "max": 10,
        "maxOpen": False,
        "integer": False,
        "nullable": False,
    }
    assert body["bounds"]["bn_momentum"]["nullable"] is True
    assert body["bounds"]["batch_size"]["integer"] is True
    assert body["choices"]["variants"] == list(VARIANTS)
    assert set(body["presets"]) == {n for n, p in PRESETS.items() if p.sweep is None}
    assert body["live_controls"] == ["lr", "batch_size", "bn_momentum"]
    assert {n for n, v in body["variants"].items() if v["batch_stats"]} == {
        "bn",
        "bn_after",
        "brn",
        "noisy_bn",
        "ghost_bn",
    }


def test_every_bound_in_the_rules_rejects_one_past_it() -> None:
    # The rules must be the config's own bounds: a value one past each is refused by RunConfig.
    for name, bound in rules().bounds.items():
        step = 1 if bound.integer else 1e-9 * max(1.0, abs(bound.max or 1))
        if bound.max is not None:
            past = bound.max if bound.maxOpen else bound.max + step
            assert not _valid(name, past), (name, past)
        if bound.min is not None:
            past = bound.min if bound.minOpen else bound.min - step
            assert not _valid(name, past), (name, past)


def _valid(name: str, value: float) -> bool:
    try:
        RunConfig.model_validate({name: value})
    except ValueError:
        return False
    return True


def test_the_page_tests_use_the_servers_rules() -> None:
    # tests/js/rules.json is what the node tests load as the server's answer.
    current = rules().model_dump(mode="json")
    on_disk = json.loads(FIXTURE.read_text())
    assert on_disk == current, (
        'tests/js/rules.json is out of date; rewrite it with: python -c "import json; '
        "from covshift.web.rules import rules; "
        "print(json.dumps(rules().model_dump(mode='json'), indent=1))\" > tests/js/rules.json"
    )
