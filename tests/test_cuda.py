"""`--device cuda`: the same run on the GPU matches the CPU run. Needs a CUDA device, so
it runs only where one exists (a CPU-only machine skips it with that reason)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from covshift.config import RunConfig
from covshift.train.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _frames(device: str) -> list[dict]:
    config = RunConfig(
        dataset="digits", depth=2, width=32, batch_size=32, steps=60, probe_every=10, device=device
    )
    trainer = Trainer(config)
    messages = []
    while not trainer.done:
        messages += trainer.train_step()
    return [m for m in messages if m["type"] == "frame"]


def test_a_cuda_run_matches_the_cpu_run() -> None:
    cpu, gpu = _frames("cpu"), _frames("cuda")
    assert [f["step"] for f in cpu] == [f["step"] for f in gpu]
    for a, b in zip(cpu, gpu, strict=True):
        json.dumps(b, allow_nan=False)
        for variant in ("plain", "bn"):
            # Same seed, same batches, same initial weights: only float rounding differs.
            assert math.isclose(
                a["variants"][variant]["loss"], b["variants"][variant]["loss"], rel_tol=1e-3
            )
            assert set(a["variants"][variant]["layers"][0]["taps"]) == set(
                b["variants"][variant]["layers"][0]["taps"]
            )


def test_the_cli_trains_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--dataset", "digits", "--steps", "200", "--device", "cuda", "--quiet"]
    command = [sys.executable, "-m", "covshift.cli", "run", *args, "--out", str(out)]
    subprocess.run(command, check=True, timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["device"] == "cuda"
    assert (out / "frames.jsonl").stat().st_size > 0
