"""NumPy's kernels for covshift's own processes: AVX2 on AMD Zen 4 (found from /proc/cpuinfo),
set before NumPy loads, never over a user's own setting, never where NumPy is loaded."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from covshift.runtime import cpu

FLAGS_ZEN4 = "fpu sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vbmi2"
FLAGS_ZEN3 = "fpu sse sse2 avx avx2 fma vaes vpclmulqdq"


def block(vendor: str, family: int, model: int, flags: str) -> str:
    """One processor's block of /proc/cpuinfo, as Linux writes it."""
    return (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: a CPU\nflags\t\t: {flags}\n"
    )


ZEN4 = block("AuthenticAMD", 25, 17, FLAGS_ZEN4)  # EPYC 9R14 (Genoa)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ZEN4, True),
        (block("AuthenticAMD", 25, 97, FLAGS_ZEN4), True),  # Ryzen 7000 (Raphael)
        (block("AuthenticAMD", 25, 1, FLAGS_ZEN3), False),  # Zen 3: family 25, no AVX-512
        (block("AuthenticAMD", 26, 2, FLAGS_ZEN4), False),  # Zen 5
        (block("GenuineIntel", 6, 143, FLAGS_ZEN4), False),  # Sapphire Rapids
        ("", False),
        (ZEN4 + "\n" + block("GenuineIntel", 6, 143, FLAGS_ZEN4), True),  # the first block
    ],
)
def test_zen4_is_amd_family_25_with_avx512(text: str, expected: bool) -> None:
    assert cpu.is_zen4(text) is expected


def fresh(code: str, **env: str) -> list[str]:
    """Run code in a new interpreter (ImportWarning an error: a name NumPy does not know
    would be one) with these variables set (an empty value: unset); its printed lines."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in (cpu.VARIABLE, "NPY_ENABLE_CPU_FEATURES")
    }
    environment.update({key: value for key, value in env.items() if value})
    done = subprocess.run(
        [sys.executable, "-W", "error::ImportWarning", "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Warning" not in done.stderr, done.stderr
    return done.stdout.splitlines()


ASK_THEN_LOAD = f"""
import os
from covshift.runtime import cpu
print(cpu.prefer_fast_sort({ZEN4!r}))
print(repr(os.environ.get(cpu.VARIABLE)))
import numpy
from numpy._core._multiarray_umath import __cpu_features__ as features
print(features["X86_V4"])
print(features["AVX512_ICL"])
"""


def test_on_zen4_numpy_loads_without_its_avx512_kernels() -> None:
    if not cpu.numpy_names_known() or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("NumPy before 2.4 names its x86 kernels otherwise; other CPUs have none")
    did, variable, x86_v4, icl = fresh(ASK_THEN_LOAD)
    assert (did, variable) == ("True", repr(cpu.AVX512_TARGETS))
    # NumPy read the variable: its AVX-512 targets are off whatever this machine has.
    assert (x86_v4, icl) == ("False", "False")


def test_a_users_own_setting_is_left_alone() -> None:
    did, variable, *_ = fresh(ASK_THEN_LOAD, NPY_DISABLE_CPU_FEATURES="AVX512_SPR")
    assert (did, variable) == ("False", repr("AVX512_SPR"))
    did, variable, *_ = fresh(ASK_THEN_LOAD, NPY_ENABLE_CPU_FEATURES="X86_V3")
    assert (did, variable) == ("False", "None")


def test_nothing_is_set_once_numpy_is_loaded() -> None:
    did, variable = fresh(
        f"import os, numpy\nfrom covshift.runtime import cpu\n"
        f"print(cpu.prefer_fast_sort({ZEN4!r}))\nprint(repr(os.environ.get(cpu.VARIABLE)))"
    )
    assert (did, variable) == ("False", "None")


def test_not_on_other_cpus() -> None:
    intel = block("GenuineIntel", 6, 143, FLAGS_ZEN4)
    did, variable = fresh(
        f"import os\nfrom covshift.runtime import cpu\n"
        f"print(cpu.prefer_fast_sort({intel!r}))\nprint(repr(os.environ.get(cpu.VARIABLE)))"
    )
    assert (did, variable) == ("False", "None")


def test_the_processes_that_ask_have_not_loaded_numpy_when_they_do() -> None:
    """`covshift`'s main and a worker's entry point ask first thing: neither module loads
    NumPy (a spawned worker imports its entry point's module, and the `covshift` script's,
    before the entry point runs)."""
    (loaded,) = fresh(
        "import sys\nimport covshift.cli, covshift.runtime.process\nprint('numpy' in sys.modules)"
    )
    assert loaded == "False"


def test_this_machine_is_read_from_proc_cpuinfo() -> None:
    """The first processor's block, read as is_zen4 reads the whole file."""
    try:
        with open("/proc/cpuinfo") as whole:
            text = whole.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    assert cpu.is_zen4(cpu._first_processor()) is cpu.is_zen4(text)
