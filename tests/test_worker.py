"""The worker process: lifecycle through commands, refusals, crashes, and a vanished server."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import serverkit
from covshift.config import RunConfig
from covshift.runtime.handle import WorkerHandle
from covshift.runtime.messages import Command, Job, Output
from covshift.wire import encode, encode_line
from serverkit import SMALL

_deadline = serverkit.per_test_deadline(60)


def start(**overrides: Any) -> WorkerHandle:
    config = RunConfig.model_validate({**SMALL, **overrides})
    worker = WorkerHandle()
    worker.start(Job(config.model_dump_json()))
    return worker


def records(outputs: list[Output]) -> list[dict[str, Any]]:
    return [json.loads(text) for output in outputs for _, text in output.messages]


def read_until(
    worker: WorkerHandle, match: Callable[[Output], bool], timeout: float = 40.0
) -> list[Output]:
    """Everything the worker sends up to and including the first output that matches."""
    collected: list[Output] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        outputs = worker.read(0.1)
        if outputs is None:
            raise AssertionError(f"worker ended; last outputs {collected[-3:]}")
        for output in outputs:
            collected.append(output)
            if match(output):
                return collected
    raise AssertionError("no matching output in time")


def reply_to(command_id: int) -> Callable[[Output], bool]:
    """The final answer to a command (a single step's is sent once the step is taken)."""
    return lambda o: o.reply is not None and o.reply.id == command_id and not o.reply.stepping


def has_frame(o: Output) -> bool:
    return any(kind == "frame" for kind, _ in o.messages)


def test_encode_turns_non_finite_into_null_and_a_flag() -> None:
    text = encode({"v": 1, "type": "frame", "loss": float("nan"), "acc": 0.5})
    assert json.loads(text) == {
        "v": 1,
        "type": "frame",
        "loss": None,
        "acc": 0.5,
        "nonfinite": {"/loss": "nan"},
    }


def test_a_line_is_the_encoded_record_and_a_newline() -> None:
    """encode_line writes what encode says, in UTF-8, ending in one newline: for a record
    orjson writes, one with a non-finite value, and one only the standard library's encoder
    takes (an integer past 64 bits)."""
    for record in (
        {"v": 1, "type": "event", "kind": "note", "text": "γ와 β"},
        {"v": 1, "type": "frame", "loss": float("nan"), "acc": 0.5},
        {"v": 1, "type": "ack", "id": 2**70},
    ):
        line = encode_line(record)
        assert line == (encode(record) + "\n").encode("utf-8")
        assert line.count(b"\n") == 1
    assert json.loads(encode_line({"id": 2**70}))["id"] == 2**70


@pytest.mark.slow
def test_commands_pause_resume_step_and_stop() -> None:
    worker = start()
    try:
        opening = read_until(worker, lambda o: o.state == "running")
        assert json.loads(opening[0].messages[0][1])["type"] == "hello"
        first = records(read_until(worker, has_frame))
        assert [r["lr"] for r in first if r["type"] == "frame"] == [0.5]

        worker.send(Command(1, "control", {"lr": 0.05}))
        answered = read_until(worker, reply_to(1))
        assert answered[-1].reply is not None and answered[-1].reply.error is None
        lr_events = [r for r in records(answered) if r.get("kind") == "lr"]
        assert [(e["value"], e["previous"]) for e in lr_events] == [(0.05, 0.5)]
        after = records(read_until(worker, has_frame))
        assert {r["lr"] for r in after if r["type"] == "frame"} == {0.05}
        # The event was sent at once; the trainer's own copy at the next step is not repeated.
        assert not [r for r in after if r.get("kind") == "lr"]

        # Refused by the trainer (spirals has 1680 training examples): nothing changes.
        worker.send(Command(2, "control", {"batch_size": 2000, "lr": 0.2}))
        refused = read_until(worker, reply_to(2))[-1]
        assert refused.reply is not None and refused.reply.error is not None
        assert refused.reply.error.startswith("batch_size:")
        assert refused.status is not None
        assert (refused.status.batch_size, refused.status.lr) == (60, 0.05)

        worker.send(Command(3, "control", {"paused": True}))
        paused = read_until(worker, reply_to(3))[-1]
        assert paused.state == "paused" and paused.status is not None
        held_at = paused.status.step
        assert worker.read(0.3) == []  # nothing trains while paused

        worker.send(Command(4, "control", {"step": True}))
        outputs = read_until(worker, reply_to(4))
        answers = [o.reply for o in outputs if o.reply is not None]
        # Taken (so the server knows the step is under way, however long it lasts), then done.
        assert [(r.id, r.stepping) for r in answers] == [(4, True), (4, False)]
        stepped = outputs[-1]
        assert stepped.status is not None and stepped.status.step == held_at + 1
        # A single step always records a frame, whatever probe_every (10) says: the page
        # shows it. Two steps in a row: at most one of them falls on the cadence.
        worker.send(Command(41, "control", {"step": True}))
        outputs += read_until(worker, reply_to(41))
        frames = [json.loads(text) for o in outputs for kind, text in o.messages if kind == "frame"]
        assert [f["step"] for f in frames] == [held_at, held_at + 1]

        worker.send(Command(5, "control", {"step": True, "paused": False}))
        wrong = read_until(worker, reply_to(5))[-1]
        assert wrong.reply is not None and (wrong.reply.error or "").startswith("step:")
        assert worker.read(0.2) == []  # still paused

        worker.send(Command(6, "control", {"paused": False}))
        assert read_until(worker, reply_to(6))[-1].state == "running"
        read_until(worker, has_frame)

        worker.send(Command(7, "stop"))
        stopped = read_until(worker, reply_to(7))[-1]
        assert stopped.state == "stopped"
        serverkit.wait_for(lambda: worker.read(0.1) is None, timeout=5)
        worker.end(5.0)
        assert worker.process.exitcode == 0
    finally:
        worker.end(0.0)
        worker.close()


@pytest.mark.slow
def test_a_command_taken_after_its_deadline_is_refused_and_changes_nothing() -> None:
    worker = start()
    try:
        read_until(worker, has_frame)
        # As when the worker was stopped, or busy with a long step, until the server gave up.
        worker.send(Command(1, "control", {"lr": 0.0777, "paused": True}, time.monotonic() - 1))
        late = read_until(worker, reply_to(1))
        answer = late[-1].reply
        assert answer is not None and answer.expired and answer.error is None
        assert late[-1].status is not None and late[-1].status.lr == 0.5
        after = records([*late, *read_until(worker, has_frame)])  # still training: not paused
        assert not [r for r in after if r["type"] == "event"]
        assert {r["lr"] for r in after if r["type"] == "frame"} == {0.5}

        worker.send(Command(2, "control", {"lr": 0.0777}, time.monotonic() + 30))
        taken = read_until(worker, reply_to(2))[-1]
        assert taken.reply is not None and not taken.reply.expired
        assert taken.status is not None and taken.status.lr == 0.0777
    finally:
        worker.end(0.0)
        worker.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., WorkerHandle]]:
    """Starts workers with config overrides; ends them after the test."""
    started: list[WorkerHandle] = []

    def spawn(**overrides: Any) -> WorkerHandle:
        started.append(start(**overrides))
        return started[-1]

    yield spawn
    for handle in started:
        handle.end(0.0)
        handle.close()


@pytest.mark.slow
def test_sigkill_reads_as_the_end_within_two_seconds(spawn: Callable[..., WorkerHandle]) -> None:
    worker = spawn()
    worker.send(Command(1, "control", {"paused": True}))  # no training needed to die
    read_until(worker, reply_to(1))
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while worker.read(0.1) is not None:
        assert time.monotonic() - killed_at < 2.0
    assert "SIGKILL" in worker.exit_reason()


@pytest.mark.slow
def test_a_worker_whose_server_vanished_exits(spawn: Callable[..., WorkerHandle]) -> None:
    worker = spawn()
    worker.send(Command(1, "control", {"paused": True}))
    read_until(worker, reply_to(1))  # paused: blocked reading its commands
    worker.close()  # the server's pipe ends close, as when the server dies
    worker.process.join(10.0)
    assert worker.process.exitcode == 0


@pytest.mark.slow
def test_a_trainer_error_fails_the_run_with_its_message(
    spawn: Callable[..., WorkerHandle],
) -> None:
    worker = spawn(batch_size=2000)  # more than spirals' 1680 training examples
    failed = read_until(worker, lambda o: o.state is not None)[-1]
    assert failed.state == "failed"
    assert failed.error is not None and failed.error.startswith("batch_size:")
    event = records([failed])[-1]
    assert (event["kind"], event["state"], event["message"]) == ("state", "failed", failed.error)
    serverkit.wait_for(lambda: worker.read(0.1) is None, timeout=5)


@pytest.mark.slow
def test_a_worker_over_its_memory_limit_fails_saying_so() -> None:
    # A probed step of this network needs ~1.3 GB; the OS holds the worker to 400 MB.
    config = RunConfig.model_validate(
        {**SMALL, "depth": 8, "width": 1024, "batch_size": 1600, "probe_every": 1}
    )
    worker = WorkerHandle()
    worker.start(Job(config.model_dump_json(), memory_limit_mb=400))
    try:
        failed = read_until(worker, lambda o: o.state == "failed")[-1]
        assert failed.error is not None
        assert failed.error.startswith(
            "out of memory: the run needed more than the 400 MB one run may use (max_run_memory_mb)"
        )
        assert records([failed])[-1]["message"] == failed.error
        serverkit.wait_for(lambda: worker.read(0.1) is None, timeout=5)
        worker.end(5.0)
        assert worker.process.exitcode == 0  # it said why and left; nothing crashed
    finally:
        worker.end(0.0)
        worker.close()


@pytest.mark.slow
def test_a_run_finishes_at_its_last_step(spawn: Callable[..., WorkerHandle]) -> None:
    worker = spawn(steps=12, probe_every=5)
    outputs = read_until(worker, lambda o: o.state == "finished")
    frames = [r["step"] for r in records(outputs) if r["type"] == "frame"]
    assert frames == [0, 5, 10, 11]  # every probe_every-th step, and the last
    assert outputs[-1].status is not None and outputs[-1].status.step == 12
    serverkit.wait_for(lambda: worker.read(0.1) is None, timeout=5)
    worker.end(5.0)
    assert worker.process.exitcode == 0


@pytest.mark.slow
def test_a_paced_run_keeps_its_pace(spawn: Callable[..., WorkerHandle]) -> None:
    worker = spawn(steps_per_s=20, probe_every=5)
    read_until(worker, has_frame)
    first = read_until(worker, has_frame)[-1].status
    began = time.monotonic()
    time.sleep(2.0)
    worker.send(Command(1, "control", {"paused": True}))
    answered = read_until(worker, reply_to(1))[-1]
    assert first is not None and answered.status is not None
    rate = (answered.status.step - first.step) / (time.monotonic() - began)
    # Unpaced, this network takes hundreds of steps a second; paced, about 20.
    assert 10 <= rate <= 25, rate


@pytest.mark.slow
def test_a_paced_run_answers_a_command_without_waiting_for_its_next_step(
    spawn: Callable[..., WorkerHandle],
) -> None:
    worker = spawn(steps_per_s=0.2, probe_every=1)  # a step every 5 s
    read_until(worker, has_frame)
    time.sleep(0.5)  # inside the wait for the next step
    sent = time.monotonic()
    worker.send(Command(1, "control", {"lr": 0.1}))
    answered = read_until(worker, reply_to(1))[-1]
    assert answered.reply is not None and answered.reply.error is None
    assert time.monotonic() - sent < 1.0  # not the 4.5 s left of the wait


# Allocates 64 blocks of 2 MiB, touched, each followed by a 256 KiB block that stays, after a
# 24 MiB block was freed (which, left to glibc, raises its mmap threshold above 2 MiB); frees
# the big blocks and prints how much of them the process still holds, in MiB.
_HELD_AFTER_FREE = """
import ctypes, sys
from covshift.runtime.worker import steady_allocator
steady = sys.argv[1] == "steady" and steady_allocator()
libc = ctypes.CDLL(None)
libc.malloc.restype = libc.memset.restype = ctypes.c_void_p
libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS")) / 1024
libc.free(libc.memset(libc.malloc(24 << 20), 1, 24 << 20))
before = rss_mib()
big = []
for _ in range(64):
    big.append(libc.memset(libc.malloc(2 << 20), 1, 2 << 20))
    libc.malloc(256 << 10)
for block in big:
    libc.free(block)
print(steady, rss_mib() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
def test_a_worker_returns_freed_tensors_to_the_system() -> None:
    import subprocess
    import sys

    def held(mode: str) -> tuple[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", _HELD_AFTER_FREE, mode],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split()  # fmt: skip
        return out[0], float(out[1])

    steady, after = held("steady")
    if steady != "True":
        pytest.skip("not glibc: no mallopt to fix the threshold with")
    # 128 MiB were allocated and freed: a worker keeps almost none of it ...
    assert after < 8, after
    # ... where glibc's own moving threshold would have kept all of it behind the blocks left.
    _, default = held("default")
    assert default > 100, default
