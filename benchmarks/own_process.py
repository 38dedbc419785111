"""Benchmark functions run in a new process set up as covshift's own processes are (NumPy's
kernels chosen by covshift.runtime.cpu before NumPy loads), their results back as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from covshift.runtime import cpu

ROOT = Path(__file__).resolve().parent.parent
# argv: the function's module and name, its arguments as JSON, the file for its result
CHILD = """
import importlib, json, sys
from covshift.runtime.cpu import prefer_avx2_numpy
prefer_avx2_numpy()
module, name, arguments, out = sys.argv[1:]
result = getattr(importlib.import_module(module), name)(*json.loads(arguments))
with open(out, "w") as file:
    json.dump(result, file)
"""


def call(function: Callable[..., Any], *arguments: Any) -> Any:
    """function(*arguments), a module-level function of an importable module, in a new
    process set up as covshift's; its result through JSON. Its errors reach stderr."""
    module, name = function.__module__, function.__qualname__
    if module == "__main__" or "." in name:
        raise ValueError(f"{module}.{name}: not a module-level function of an importable module")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, module, name, json.dumps(arguments), str(out)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{module}.{name} failed in its process (exit {done.returncode})")
        return json.loads(out.read_text())


def numpy_kernels() -> str:
    """Which of NumPy's kernels such a process runs, in words."""
    if any(name in os.environ for name in cpu.USER_VARIABLES):
        settings = ", ".join(
            f"{name}={os.environ[name]!r}" for name in cpu.USER_VARIABLES if name in os.environ
        )
        return f"NumPy as the environment sets it ({settings})"
    setting = cpu.wanted_setting()
    if setting is None:
        return "NumPy's kernels as it chooses them"
    return f"NumPy without {setting} ({cpu.VARIABLE}: AMD Zen 4, covshift.runtime.cpu)"
