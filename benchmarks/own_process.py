"""Benchmark code run in a process set up as covshift's own (`covshift run`, a worker):
NumPy's kernels chosen by covshift.runtime.cpu before NumPy loads there."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from covshift.runtime import cpu

# argv: the function's module and name, its arguments as JSON, the file for its result
CHILD = """
import importlib, json, sys
from covshift.runtime.cpu import prefer_fast_sort
prefer_fast_sort()
module, name, arguments, out = sys.argv[1:]
result = getattr(importlib.import_module(module), name)(*json.loads(arguments))
with open(out, "w") as file:
    json.dump(result, file)
"""


def call(function: Callable[..., Any], *arguments: Any) -> Any:
    """function(*arguments) in a new process set up as covshift's; its result, through JSON."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                function.__module__,
                function.__name__,
                json.dumps(arguments),
                str(out),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
        )
        return json.loads(out.read_text())


def numpy_kernels() -> str:
    """Which of NumPy's kernels such a process runs, in words."""
    setting = cpu.wanted_setting()
    if setting is None:
        return "NumPy's kernels as it chooses them"
    return f"NumPy without {setting} ({cpu.VARIABLE}: AMD Zen 4, covshift.runtime.cpu)"
