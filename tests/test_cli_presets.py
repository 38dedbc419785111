"""`covshift run --preset`: explicit flags override the preset; a run writes its report; a sweep
preset writes its points; paper-fig1 says which data it trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from covshift.cli import main


def test_preset_values_apply_and_explicit_flags_win(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--steps", "3", "--width", "8", "--probe-every", "2", "--quiet"]
    assert main(["run", "--preset", "paper-fig1", *flags, "--out", str(tmp_path)]) == 0
    assert "not the paper's MNIST" in capsys.readouterr().err
    hello = json.loads((tmp_path / "frames.jsonl").read_text().splitlines()[0])
    assert hello["config"]["steps"] == 3 and hello["config"]["width"] == 8  # flags
    assert hello["config"]["test_every"] == 500 and hello["config"]["depth"] == 3  # preset
    report = (tmp_path / "report.html").read_text()
    assert "Ioffe &amp; Szegedy (2015), Figure 1, on mnist1d" in report


def test_a_sweep_preset_writes_its_points_and_report(tmp_path: Path) -> None:
    flags = ["--steps", "4", "--depth", "1", "--width", "8", "--quiet"]
    assert main(["run", "--preset", "lr-sweep", *flags, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["type"] == "sweep" and summary["field"] == "lr"
    assert [p["value"] for p in summary["points"]] == summary["values"]
    assert (tmp_path / "report.html").stat().st_size > 1_000_000


def test_a_plain_run_writes_a_report(tmp_path: Path) -> None:
    flags = ["--steps", "2", "--depth", "1", "--width", "4", "--quiet"]
    assert main(["run", *flags, "--out", str(tmp_path)]) == 0
    assert "<title>covshift run</title>" in (tmp_path / "report.html").read_text()


def test_an_unknown_preset_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--preset", "paper-fig9"])
    assert caught.value.code == 2 and "paper-fig1" in capsys.readouterr().err
