"""NumPy's sort kernel for the processes covshift runs: on AMD Zen 4, the AVX2 one.

A probe sorts every tapped tensor (exact percentiles and histograms come from one sort per
row), so NumPy's float sort is most of a frame's measuring. NumPy (2.4) runs it with its
AVX-512 kernel wherever AVX-512 is found; on AMD Zen 4 that kernel's compress-stores to
memory are microcoded, and it sorts ~3x slower than NumPy's own AVX2 kernel (a known NumPy
issue). NumPy picks its kernels once, as it loads, and a process can only ask through
NPY_DISABLE_CPU_FEATURES. So covshift's own processes (the `covshift` command and every
worker process) ask before NumPy loads, on that CPU only; it is their NumPy alone, never
that of a process which imports covshift (`covshift.watch`). A user's own setting of the
variable, an empty one included, is left as it is.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

VARIABLE = "NPY_DISABLE_CPU_FEATURES"
# NumPy 2.4's names for its AVX-512 targets (older releases name them otherwise); what is
# left is its AVX2 code, which on Zen 4 runs as fast as the AVX-512 code elsewhere.
AVX512_TARGETS = "X86_V4 AVX512_ICL AVX512_SPR"
FIRST_NUMPY_WITH_THOSE_NAMES = (2, 4)


def is_zen4(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text describes AMD Zen 4: family 25 (0x19) with AVX-512.
    Zen 3 is family 25 without it; Zen 5 (family 26) stores compressed vectors quickly."""
    first = cpuinfo.split("\n\n", 1)[0]  # one processor's block
    fields: dict[str, str] = {}
    for line in first.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == "25"
        and "avx512f" in fields.get("flags", "").split()
    )


def numpy_names_known() -> bool:
    """Whether the NumPy installed (read from its metadata, not imported) names its kernels
    as AVX512_TARGETS does."""
    try:
        release = importlib.metadata.version("numpy").split(".")[:2]
        return tuple(int(part) for part in release) >= FIRST_NUMPY_WITH_THOSE_NAMES
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


def _first_processor() -> str:
    """The first processor's block of /proc/cpuinfo (the whole file lists every core); empty
    where there is none."""
    lines: list[str] = []
    try:
        with Path("/proc/cpuinfo").open(errors="replace") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break
                lines.append(line)
    except OSError:
        return ""
    return "".join(lines)


def wanted_setting(cpuinfo: str | None = None) -> str | None:
    """The NPY_DISABLE_CPU_FEATURES value covshift's processes set on this machine, or None
    where they set none: not Zen 4, an older NumPy, or a user's own setting of either of
    NumPy's variables. `cpuinfo`: /proc/cpuinfo's text (read from there when None)."""
    if VARIABLE in os.environ or "NPY_ENABLE_CPU_FEATURES" in os.environ:
        return None
    if not is_zen4(_first_processor() if cpuinfo is None else cpuinfo):
        return None
    return AVX512_TARGETS if numpy_names_known() else None


def prefer_fast_sort(cpuinfo: str | None = None) -> bool:
    """Before NumPy loads in this process, set the wanted_setting (the processes this one
    starts inherit it). Returns whether it did: not where NumPy is loaded already."""
    setting = None if "numpy" in sys.modules else wanted_setting(cpuinfo)
    if setting is None:
        return False
    os.environ[VARIABLE] = setting
    return True
