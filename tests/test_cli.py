"""The command line: a headless run writes its files; bad values exit non-zero with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from covshift.cli import LIVE_ONLY_FIELDS, ProgressBar, build_parser, main
from covshift.config import RunConfig


def test_run_writes_frames_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            "--dataset",
            "moons",
            "--steps",
            "30",
            "--depth",
            "2",
            "--width",
            "8",
            "--probe-every",
            "10",
            "--variants",
            "plain,bn,bn_after",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0 and capsys.readouterr().out == ""
    records = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert records[0]["type"] == "hello"
    assert [r["step"] for r in records if r["type"] == "frame"] == [0, 10, 20, 29]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 30 and set(summary["variants"]) == {"plain", "bn", "bn_after"}
    last = records[-1]["variants"]["bn"]
    assert summary["variants"]["bn"]["test"]["acc"] == last["test"]["acc"]
    assert summary["config"]["dataset"] == "moons"


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--batch-size", "5000"], "batch_size"),
        (["--lr", "0"], "lr"),
        (["--depth", "9"], "depth"),
        (["--width", "abc"], "width"),
        (["--variants", "plain,fancy"], "variants"),
        (["--bn-momentum", "1.5"], "bn_momentum"),
    ],
)
def test_bad_values_exit_2_with_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], field: str
) -> None:
    assert main(["run", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"covshift run: error: {field}")


def test_batch_size_one_explains_and_trains_plain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "run",
                "--batch-size",
                "1",
                "--steps",
                "5",
                "--depth",
                "1",
                "--width",
                "4",
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    assert "bn is skipped. BatchNorm cannot train on batch size 1" in capsys.readouterr().err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["state"] == "finished"
    assert summary["variants"]["bn"]["status"] == "skipped"
    assert summary["variants"]["plain"]["status"] == "trained"
    # A variant that never trained reports no test numbers (its weights say nothing).
    assert summary["variants"]["bn"]["test"] is None
    assert summary["variants"]["plain"]["test"]["acc"] is not None


def test_cumulative_bn_momentum_flag(tmp_path: Path) -> None:
    assert (
        main(
            [
                "run",
                "--bn-momentum",
                "cumulative",
                "--steps",
                "2",
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    hello = json.loads((tmp_path / "frames.jsonl").read_text().splitlines()[0])
    assert hello["config"]["bn_momentum"] is None


def test_help_lists_every_config_field_with_its_bounds() -> None:
    run_help = build_parser()._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr]
    for name in RunConfig.model_fields:
        flag = "--" + name.replace("_", "-")
        assert (flag in run_help) is (name not in LIVE_ONLY_FIELDS), name
    assert "le 4096" in run_help and "one of sigmoid, tanh, relu" in run_help


def test_installed_console_script_answers_help() -> None:
    script = Path(sys.executable).parent / "covshift"
    assert script.exists(), "pip install must create the covshift console script"
    for args in ([], ["run"]):
        result = subprocess.run(
            [str(script), *args, "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0 and "usage: covshift" in result.stdout


def test_a_run_whose_every_variant_diverged_stops_there(tmp_path: Path) -> None:
    """Nothing trains after every variant diverged, so the run ends instead of stepping on."""
    wild = "--dataset digits --activation relu --init default --lr 10 --depth 2 --width 32"
    args = [*wild.split(), "--variants", "plain", "--steps", "5000", "--probe-every", "5"]
    assert main(["run", *args, "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    diverged_at = summary["variants"]["plain"]["diverged_at"]
    assert diverged_at is not None
    assert diverged_at < summary["steps"] < 5000


def test_the_progress_bar_names_accuracy_and_says_how_long_is_left(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bar = ProgressBar()
    bar.started -= 2.0  # two seconds in
    bar(100, 400, {"plain": {"test": {"acc": 0.9125}}, "bn": {"test": None}})
    line = capsys.readouterr().err
    assert "100/400" in line and "test accuracy: plain 91.2%" in line and "bn" not in line
    # 100 steps in 2 s: 300 steps left take about 6 s.
    assert "ETA 0:05" in line or "ETA 0:06" in line
    bar.drawn = 0.0
    bar(400, 400, {"plain": {"test": {"acc": 0.95}}})
    assert "done" in capsys.readouterr().err
