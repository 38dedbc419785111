"""The examples run as a user would run them and leave a run folder with frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow  # a fresh interpreter importing torch
@pytest.mark.parametrize(
    "script",
    [
        ["cnn_digits.py"],
        ["cnn_digits.py", "--no-bn"],
        ["cnn_digits.py", "--compare"],
        ["transformer_block.py"],
    ],
    ids=["cnn", "cnn-no-bn", "cnn-compare", "transformer"],
)
def test_an_example_writes_a_watched_run(script: list[str], tmp_path: Path) -> None:
    command = [sys.executable, str(EXAMPLES / script[0]), *script[1:], "--steps", "12"]
    command += ["--every", "5", "--logdir", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    (folder,) = tmp_path.iterdir()
    assert f"covshift serve --logdir {tmp_path}" in result.stdout
    records = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert records[0]["type"] == "hello"
    assert [r["step"] for r in records if r["type"] == "frame"] == [1, 5, 10]
    layers = next(iter(records[0]["variants"].values()))["layers"]
    assert layers, "the example's model has layers to watch"
    assert json.loads((folder / "state.json").read_text())["state"] == "finished"
    if "--compare" in script:  # both twins in one run, on one step axis
        assert set(records[0]["variants"]) == {"bn", "plain"}
        frame = next(r for r in records if r["type"] == "frame")
        assert set(frame["variants"]) == {"bn", "plain"}
        assert records[0]["variants"]["plain"]["normalizer"] is None
