"""The package layers: imports point one way, and the web process never loads torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import covshift
import pytest

PACKAGE = Path(covshift.__file__).resolve().parent

# For each layer, the covshift layers it must never import.
FORBIDDEN = {
    "train": ("web", "runtime", "reports"),
    "reports": ("train", "runtime", "web"),
    "runtime": ("web", "reports"),
    "web": ("train",),
    "watching": ("web", "runtime", "reports"),
}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the covshift modules a file imports (relative imports resolved)."""
    package = ".".join(("covshift", *path.relative_to(PACKAGE).parent.parts))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("covshift")}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FORBIDDEN else None


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imported_modules(path):
            if layer_of(module) in FORBIDDEN[layer]:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert offenders == []


def test_top_level_modules_import_no_layer_but_through_the_cli() -> None:
    # config, presets, settings, errors, wire, claims, lessons and page_files sit under every
    # layer: they import none.
    offenders = []
    top = ("config", "presets", "settings", "errors", "wire", "claims", "lessons", "page_files")
    for name in top:
        path = PACKAGE / f"{name}.py"
        offenders += [f"{name} imports {m}" for m in imported_modules(path) if layer_of(m)]
    assert offenders == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    # The scan above must be able to fail: a relative import two levels up is resolved.
    probe = PACKAGE / "web" / "_layer_probe.py"
    probe.write_text("from ..train import trainer\n")
    try:
        assert "covshift.train.trainer" in imported_modules(probe)
    finally:
        probe.unlink()


@pytest.mark.parametrize("module", ["covshift.web.app", "covshift.cli", "covshift.reports.run"])
def test_web_process_never_imports_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_app_serves_without_torch_installed() -> None:
    # Stronger than the check above: torch made unimportable, the app still builds.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from covshift.web.app import create_app\n"
        "from covshift.settings import Settings\n"
        "create_app(Settings(demo_run=False))\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
