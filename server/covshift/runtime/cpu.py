"""NumPy's AVX-512 kernels off in covshift's own processes on AMD Zen 4, where its sort runs
~3x faster with its AVX2 code.

A probe sorts every tapped tensor (exact percentiles and histograms come from one sort per
row): NumPy's float sort is the largest single cost of a frame's measuring. NumPy (2.4)
runs it with its AVX-512 kernel wherever AVX-512 is found; on AMD Zen 4 that kernel's
compress-stores to memory are microcoded, and it sorts ~3x slower than NumPy's own AVX2
kernel (a known NumPy issue). NumPy picks its kernels once, as it loads, and a process can
only choose through NPY_DISABLE_CPU_FEATURES, which covers every kernel, not the sort's
alone. So covshift's own processes (the `covshift` command and every worker process) set
it before NumPy loads, on that CPU only; never in a process that imports covshift
(`covshift.watch`), and never over a user's own setting of NumPy's variables, an empty
one included.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

VARIABLE = "NPY_DISABLE_CPU_FEATURES"
USER_VARIABLES = (VARIABLE, "NPY_ENABLE_CPU_FEATURES")
# NumPy 2.4's names for its AVX-512 targets (older releases name them otherwise); what is
# left is its AVX2 code, which on Zen 4 (256-bit units inside) is as fast for the rest.
AVX512_TARGETS = "X86_V4 AVX512_ICL AVX512_SPR"
FIRST_NUMPY_WITH_THOSE_NAMES = (2, 4)


def is_zen4(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's first processor is AMD Zen 4: family 25 (0x19) with AVX-512.
    Zen 3 is family 25 without it; Zen 5 (family 26) stores compressed vectors quickly."""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == "25"
        and "avx512f" in fields.get("flags", "").split()
    )


def numpy_takes_the_setting() -> bool:
    """Whether the NumPy installed (read from its metadata, not imported) is 2.4 or later, so
    names its kernels as AVX512_TARGETS does, and came as a manylinux wheel for x86-64 (as
    PyPI's): NumPy refuses to load when told to disable a kernel its build requires, and a
    wheel for any x86-64 Linux machine requires no AVX-512, where a build of one's own
    (`-Dcpu-baseline=native`) may."""
    try:
        numpy = importlib.metadata.distribution("numpy")
        release = tuple(int(part) for part in numpy.version.split(".")[:2])
        wheel = numpy.read_text("WHEEL") or ""
    except (importlib.metadata.PackageNotFoundError, ValueError, AttributeError, TypeError):
        return False
    tags = [line[4:].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    portable = bool(tags) and all(
        ("manylinux" in tag or "musllinux" in tag) and tag.endswith("x86_64") for tag in tags
    )
    return release >= FIRST_NUMPY_WITH_THOSE_NAMES and portable


def _first_processor() -> str:
    """The first processor's block of /proc/cpuinfo (the file lists every core); empty
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
    where they set none: not Zen 4, a NumPy that would not take it, or a user's own setting.
    `cpuinfo`: /proc/cpuinfo's text (read from there when None)."""
    if any(name in os.environ for name in USER_VARIABLES):
        return None
    if not is_zen4(_first_processor() if cpuinfo is None else cpuinfo):
        return None
    return AVX512_TARGETS if numpy_takes_the_setting() else None


def prefer_avx2_numpy(cpuinfo: str | None = None) -> bool:
    """Before NumPy loads in this process, set the wanted_setting (the processes this one
    starts inherit it). Returns whether it did: not where NumPy is loaded already."""
    setting = None if "numpy" in sys.modules else wanted_setting(cpuinfo)
    if setting is None:
        return False
    os.environ[VARIABLE] = setting
    return True
