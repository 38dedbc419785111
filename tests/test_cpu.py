"""NumPy's kernels for covshift's own processes: AVX2 on AMD Zen 4 (found from /proc/cpuinfo),
set before NumPy loads by the `covshift` command and each worker, never over a user's own
setting, never where NumPy is loaded, never in a process that calls covshift's code."""

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
INTEL = block("GenuineIntel", 6, 143, FLAGS_ZEN4)  # Sapphire Rapids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ZEN4, True),
        (block("AuthenticAMD", 25, 97, FLAGS_ZEN4), True),  # Ryzen 7000 (Raphael)
        (block("AuthenticAMD", 25, 1, FLAGS_ZEN3), False),  # Zen 3: family 25, no AVX-512
        (block("AuthenticAMD", 26, 2, FLAGS_ZEN4), False),  # Zen 5
        (INTEL, False),
        ("", False),
        (ZEN4 + "\n" + INTEL, True),  # the first processor's block
    ],
)
def test_zen4_is_amd_family_25_with_avx512(text: str, expected: bool) -> None:
    assert cpu.is_zen4(text) is expected


def fresh(code: str, **env: str) -> list[str]:
    """Run code in a new interpreter, NumPy's variables unset but for these (an empty value
    kept as one), ImportWarning an error (NumPy's word for a name it does not know); the
    lines it printed."""
    environment = {k: v for k, v in os.environ.items() if k not in cpu.USER_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-W", "error::ImportWarning", "-c", code],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    return done.stdout.splitlines()


# Whatever this machine and its NumPy: the child believes it is on Zen 4 with a NumPy that
# takes the setting, then says what prefer_avx2_numpy did.
AS_ON_ZEN4 = f"""
import os
from covshift.runtime import cpu
cpu._first_processor = lambda: {ZEN4!r}
cpu.numpy_takes_the_setting = lambda: True
"""
REPORT = """
print(cpu.prefer_avx2_numpy())
print(repr(os.environ.get(cpu.VARIABLE)))
"""


def test_on_zen4_numpy_loads_without_its_avx512_kernels() -> None:
    """The real thing: the setting made, then NumPy loaded with it."""
    if not cpu.numpy_takes_the_setting() or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("only a NumPy 2.4+ wheel for x86-64 takes the setting")
    loads = (
        "import numpy\n"
        "from numpy._core._multiarray_umath import __cpu_features__, __cpu_dispatch__\n"
        "print(all(name in __cpu_dispatch__ for name in cpu.AVX512_TARGETS.split()))\n"
        "print([name for name in cpu.AVX512_TARGETS.split() if __cpu_features__[name]])\n"
    )
    code = f"import os\nfrom covshift.runtime import cpu\nprint(cpu.prefer_avx2_numpy({ZEN4!r}))"
    did, dispatched, still_on = fresh(code + "\n" + loads)
    assert did == "True"
    # NumPy knows every name (no ImportWarning either), and none of those kernels is on,
    # whatever this machine has (on one without AVX-512 they never are).
    assert (dispatched, still_on) == ("True", "[]")


def test_zen4_gets_the_setting() -> None:
    did, variable = fresh(AS_ON_ZEN4 + REPORT)
    assert (did, variable) == ("True", repr(cpu.AVX512_TARGETS))


@pytest.mark.parametrize(
    ("name", "value"),
    [(cpu.VARIABLE, "AVX512_SPR"), (cpu.VARIABLE, ""), ("NPY_ENABLE_CPU_FEATURES", "X86_V3")],
)
def test_a_users_own_setting_is_left_alone(name: str, value: str) -> None:
    did, variable = fresh(AS_ON_ZEN4 + REPORT, **{name: value})
    assert did == "False"
    assert variable == repr(value if name == cpu.VARIABLE else None)


def test_nothing_is_set_once_numpy_is_loaded() -> None:
    did, variable = fresh(AS_ON_ZEN4 + "import numpy\n" + REPORT)
    assert (did, variable) == ("False", "None")


def test_not_on_other_cpus() -> None:
    other = AS_ON_ZEN4.replace(repr(ZEN4), repr(INTEL))
    did, variable = fresh(other + REPORT)
    assert (did, variable) == ("False", "None")


def test_the_covshift_command_sets_it_first_and_a_caller_of_main_is_left_alone() -> None:
    """`covshift` (main reading sys.argv) sets it before NumPy loads; main(argv) called from
    a user's code leaves that process's environment alone."""
    code = (
        AS_ON_ZEN4 + "import sys, covshift.cli\n"
        "sys.argv = ['covshift', '--version']\n"
        "for argv in ([['--version']], []):\n"
        "    try:\n"
        "        covshift.cli.main(*argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    print(repr(os.environ.get(cpu.VARIABLE)), 'numpy' in sys.modules)\n"
    )
    called, command = [line for line in fresh(code) if not line.startswith("covshift ")]
    assert called == "None False"
    assert command == f"{cpu.AVX512_TARGETS!r} False"


@pytest.mark.slow
def test_a_worker_sets_it_before_it_loads_torch() -> None:
    """process_main, as a spawned worker runs it; its server ended before giving it a job."""
    code = (
        AS_ON_ZEN4 + "import sys\nfrom multiprocessing import Pipe\n"
        "from covshift.runtime.process import process_main\n"
        "commands, server_end = Pipe(duplex=False)\n"
        "server_end.close()\n"
        "_, outputs = Pipe(duplex=False)\n"
        "process_main(commands, outputs)\n"
        "print(repr(os.environ.get(cpu.VARIABLE)), 'torch' in sys.modules)\n"
    )
    (line,) = fresh(code)
    assert line == f"{cpu.AVX512_TARGETS!r} True"  # set, then the worker loaded torch


def test_the_processes_that_set_it_have_not_loaded_numpy_when_they_do() -> None:
    """`covshift`'s main and a worker's entry point set it first thing: neither module loads
    NumPy (a spawned worker imports its entry point's module, and the `covshift` script's,
    before the entry point runs)."""
    (loaded,) = fresh(
        "import sys\nimport covshift.cli, covshift.runtime.process\nprint('numpy' in sys.modules)"
    )
    assert loaded == "False"


def test_only_the_first_processor_is_read_from_proc_cpuinfo() -> None:
    try:
        with open("/proc/cpuinfo") as whole:
            text = whole.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    assert cpu._first_processor().rstrip("\n") == text.split("\n\n", 1)[0].rstrip("\n")
