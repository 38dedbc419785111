"""Faults around the server process itself, through the real `covshift serve`: a log directory
it cannot use at start, and a server killed mid-run then started again on the same store."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import serverkit
from covshift.web import store
from covshift.web.lifecycle import RunInfo, RunState
from covshift.web.store import RunStore
from covshift.wire import SCHEMA_VERSION, encode, state_event
from faultkit import fill, tmpfs
from liveserver import serve
from serverkit import SMALL, strict_json, wait_for

COVSHIFT = str(Path(sys.executable).parent / "covshift")


_deadline = serverkit.per_test_deadline(90)


def environment() -> dict[str, str]:
    """This environment without COVSHIFT_* settings, so only the flags given count."""
    return {key: value for key, value in os.environ.items() if not key.startswith("COVSHIFT_")}


def serve_refusing(logdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COVSHIFT, "serve", "--no-browser", "--no-demo", "--port", "0", "--logdir", str(logdir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(),
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], logdir: Path, reason: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1  # one line
    assert result.stderr.startswith(f"covshift serve: error: log directory {logdir} ")
    assert "is not writable" in result.stderr and reason in result.stderr


@pytest.mark.slow  # starts `covshift serve` (torch import included)
def test_serve_refuses_a_log_directory_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    logdir = tmp_path / "a-file" / "logs"
    assert_refused(serve_refusing(logdir), logdir, "Not a directory")


@pytest.mark.slow  # starts `covshift serve` (torch import included)
def test_serve_refuses_a_read_only_log_directory(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", "ro") as logdir:
        assert_refused(serve_refusing(logdir), logdir, "Read-only file system")


@pytest.mark.slow  # starts `covshift serve` (torch import included)
def test_serve_refuses_a_log_directory_on_a_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "1m") as disk:
        fill(disk)
        (disk / "logs").mkdir()  # a full disk still makes folders and empty files
        assert_refused(serve_refusing(disk / "logs"), disk / "logs", "No space left on device")


# ---- a server killed mid-run, then started again ----


def _stat(pid: int) -> list[str]:
    """Fields 3 on of /proc/<pid>/stat (state, parent, ...); [] for no such process."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def children_of(pid: int) -> list[int]:
    """The processes whose parent is pid (the server's run workers)."""
    found = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [child for child in found if _stat(child)[1:2] == [str(pid)]]


def alive(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])  # a zombie has exited


@pytest.mark.slow
def test_a_run_cut_off_by_a_killed_server_is_listed_stopped_with_its_frames(
    tmp_path: Path,
) -> None:
    with serve(tmp_path, "--no-demo") as server:
        run_id = httpx.post(f"{server.base}/api/runs", json=SMALL).json()["id"]
        frames = tmp_path / "logs" / run_id / "frames.jsonl"
        wait_for(lambda: frames.is_file() and frames.read_text().count('"frame"') >= 20)
        workers = children_of(server.process.pid)
        assert workers
        server.process.kill()  # SIGKILL: no shutdown, nothing saved
        server.process.wait()
        # Its workers read end-of-file on their command pipe and exit by themselves.
        wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10)
    text = frames.read_text()
    kept = text[: text.rfind("\n") + 1].splitlines()  # without a half-written last line

    with serve(tmp_path, "--no-demo") as server, httpx.Client(base_url=server.base) as http:
        [run] = http.get("/api/runs").json()
        assert (run["id"], run["state"]) == (run_id, "stopped")
        assert run["error"] == "the server stopped while the run was running; it was not resumed"
        records = [strict_json(line) for line in kept]
        last_frame = [r for r in records if r["type"] == "frame"][-1]
        assert run["step"] == last_frame["step"] + 1 and run["ended"]
        exported = http.get(f"/api/runs/{run_id}/export").text.splitlines()
        # Every whole line kept, a half-written last one cut off, the stop recorded last.
        assert exported[:-1] == kept
        assert strict_json(exported[-1]) == {
            "v": SCHEMA_VERSION,
            "type": "event",
            "step": run["step"],
            "kind": "state",
            "state": "stopped",
        }
        table = list(
            csv.DictReader(io.StringIO(http.get(f"/api/runs/{run_id}/export?format=csv").text))
        )
        assert [int(row["step"]) for row in table[::2]] == [
            r["step"] for r in records if r["type"] == "frame"
        ]


@pytest.mark.slow
def test_a_second_server_on_the_same_log_directory_is_refused_and_leaves_the_live_run_alone(
    tmp_path: Path,
) -> None:
    logdir = tmp_path / "logs"
    with serve(tmp_path, "--no-demo") as server:
        run_id = httpx.post(f"{server.base}/api/runs", json=SMALL).json()["id"]
        frames, state = logdir / run_id / "frames.jsonl", logdir / run_id / "state.json"
        wait_for(lambda: frames.is_file() and frames.read_text().count('"frame"') >= 5)
        saved = state.read_text()

        second = serve_refusing(logdir)
        assert (second.returncode, second.stdout) == (2, "")
        assert second.stderr == (
            f"covshift serve: error: log directory {logdir} is in use by another covshift "
            f"server (pid {server.process.pid}); stop it or choose another --logdir\n"
        )
        # The first server's run was not recovered under it: still running, still growing.
        assert state.read_text() == saved
        count = frames.read_text().count('"frame"')
        wait_for(lambda: frames.read_text().count('"frame"') > count + 5)
        assert '"stopped"' not in frames.read_text()
        assert httpx.get(f"{server.base}/api/runs/{run_id}").json()["state"] == "running"

        server.process.kill()  # SIGKILL: the kernel drops its lock with the process
        server.process.wait()
    with serve(tmp_path, "--no-demo") as server:
        [run] = httpx.get(f"{server.base}/api/runs").json()
        assert (run["id"], run["state"]) == (run_id, "stopped")
        assert frames.read_text().endswith('"kind":"state","state":"stopped"}\n')


# ---- the recovery rule, on files written by hand ----


def cut_off_run(root: Path, lines: list[str], tail: str = "") -> tuple[RunStore, Path]:
    """A stored run still marked running, as a killed server leaves it."""
    run_store = RunStore(root)
    info = RunInfo(
        id="r" * 22,
        state=RunState.RUNNING,
        created=datetime(2025, 1, 1, tzinfo=timezone.utc),
        config={},
        lr=0.5,
        batch_size=60,
        bn_momentum=0.1,
    )
    log = run_store.create(info, {"dataset": "moons"})
    log.append(lines)
    log.close()
    path = run_store.frames_path(info.id)
    with path.open("a", encoding="utf-8") as file:
        file.write(tail)
    return run_store, path


def frame(step: int, lr: float, batch_size: int) -> str:
    record = {"v": 1, "type": "frame", "step": step, "epoch": step / 28, "lr": lr}
    return encode({**record, "batch_size": batch_size, "variants": {}})


@pytest.mark.parametrize("tail_bytes", [store.TAIL_BYTES, 100])
def test_recovery_takes_the_last_frame_cuts_a_half_line_and_records_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail_bytes: int
) -> None:
    monkeypatch.setattr(store, "TAIL_BYTES", tail_bytes)  # 100: read back in several pieces
    lr_change = encode({"v": 1, "type": "event", "step": 5, "kind": "lr", "value": 0.05})
    lines = ['{"v":1,"type":"hello"}', frame(0, 0.5, 60), lr_change, frame(10, 0.05, 32)]
    run_store, path = cut_off_run(tmp_path, lines, tail='{"v":1,"type":"frame","ste')

    [run] = run_store.load()
    assert run.state is RunState.STOPPED and "server stopped" in (run.error or "")
    assert (run.step, run.epoch, run.lr, run.batch_size) == (11, 10 / 28, 0.05, 32)
    stopped = encode(state_event(11, "stopped"))
    assert path.read_text() == "\n".join([*lines, stopped]) + "\n"
    assert RunStore(tmp_path).load() == [run]  # saved so: a second start changes nothing
    assert path.read_text().count(stopped) == 1


def test_recovery_keeps_an_end_the_file_recorded(tmp_path: Path) -> None:
    # Killed after writing the run's failure, before saving state.json.
    failed = encode(state_event(3, "failed", message="training failed: RuntimeError: x"))
    lines = ['{"v":1,"type":"hello"}', frame(0, 0.5, 60), failed]
    run_store, path = cut_off_run(tmp_path, lines)
    [run] = run_store.load()
    assert (run.state, run.error, run.step) == (
        RunState.FAILED,
        "training failed: RuntimeError: x",
        1,
    )
    assert path.read_text() == "\n".join(lines) + "\n"  # nothing added


def test_recovery_of_a_run_that_recorded_its_own_stop_adds_no_second_one(tmp_path: Path) -> None:
    # Killed after writing the run's "stopped", before saving state.json: it ends once.
    stopped = encode(state_event(1, "stopped"))
    lines = ['{"v":1,"type":"hello"}', frame(0, 0.5, 60), stopped]
    run_store, path = cut_off_run(tmp_path, lines)
    [run] = run_store.load()
    assert run.state is RunState.STOPPED
    assert path.read_text() == "\n".join(lines) + "\n"  # nothing added
    assert path.read_text().count('"state":"stopped"') == 1


def test_recovery_of_a_run_without_frames_or_file(tmp_path: Path) -> None:
    run_store, path = cut_off_run(tmp_path, [])
    path.unlink()  # e.g. the disk filled before its first line
    [run] = run_store.load()
    assert (run.state, run.step) == (RunState.STOPPED, 0)
    assert not path.exists()
