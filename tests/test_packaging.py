"""The wheel carries every package of the source tree (an installed covshift is complete)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_package_under_server_is_listed_for_the_wheel() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    # [tool.setuptools] packages = [...] (read by pattern: tomllib needs Python 3.11)
    block = re.search(r"^packages = \[(.*?)\]", pyproject, flags=re.M | re.S)
    assert block, "pyproject.toml lists the wheel's packages"
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    server = ROOT / "server"
    found = {
        ".".join(init.parent.relative_to(server).parts)
        for init in server.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert "covshift.train" in found, "the scan found the source packages"
    assert found <= listed, f"not in pyproject's [tool.setuptools] packages: {found - listed}"
