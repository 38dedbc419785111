"""A damaged log directory: files cut off, garbage bytes, the wrong JSON, links out of the
folder. A damaged run is listed "damaged" with the reason, bad lines of frames.jsonl are
skipped, nothing else is rewritten, and the server, list, exports, report and replay work."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import serverkit
from covshift.config import RunConfig
from covshift.reports.export import csv_lines
from covshift.reports.run import report_html
from covshift.train.data import Dataset
from covshift.train.trainer import Trainer
from covshift.web import store
from covshift.web.app import create_app
from covshift.web.lifecycle import RunInfo, RunState
from covshift.web.store import RunStore
from covshift.wire import SCHEMA_VERSION, encode, state_event
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from serverkit import strict_json

_deadline = serverkit.per_test_deadline(60)

GOOD = "g" * 22  # an intact run beside the damaged one: never rewritten, always listed
HURT = "h" * 22  # the run whose files are damaged
FILES = ("config.json", "state.json", "frames.jsonl")
# In the files outside the log directory that a link points to: must never be served.
SECRET = "secret-outside"


class Lines(list[str]):
    """A list of lines shown short (Hypothesis prints the arguments of a failing case)."""

    def __repr__(self) -> str:
        return f"<{len(self)} lines of a real run>"


@pytest.fixture(scope="module")
def lines(digits: Dataset) -> list[str]:
    """A real run's frames.jsonl lines (seeded, tiny): hello, frames, events, its end."""
    config = RunConfig(dataset="digits", depth=2, width=8, steps=9, probe_every=4, test_every=4)
    trainer = Trainer(config, digits)
    records = [trainer.hello()]
    while not trainer.done:
        records += trainer.train_step()
    return Lines([*map(encode, records), encode(state_event(9, "finished"))])


def write_run(
    root: Path,
    run_id: str,
    lines: list[str],
    state: RunState = RunState.FINISHED,
    config: dict[str, Any] | None = None,
) -> Path:
    """A run folder as the server writes it; its path."""
    info = RunInfo(
        id=run_id,
        state=state,
        # GOOD is older: the list's order is known.
        created=datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(hours=run_id == HURT),
        ended=None if state.active else datetime(2025, 1, 2, tzinfo=timezone.utc),
        config={},
        step=9,
        lr=0.5,
        batch_size=32,
        bn_momentum=0.1,
    )
    log = RunStore(root).create(info, config or {"dataset": "digits", "depth": 2})
    log.append(lines)
    log.close()
    return root / run_id


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry under folder, byte for byte (a link as its target), to compare later."""
    found: dict[str, bytes] = {}
    if folder.is_symlink():
        return {".": os.readlink(folder).encode()}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            found[name] = path.read_bytes()
    return found


def client(root: Path) -> TestClient:
    return TestClient(create_app(serverkit.settings(root)))


def listed(http: TestClient) -> dict[str, dict[str, Any]]:
    answer = http.get("/api/runs")
    assert answer.status_code == 200, answer.text
    return {run["id"]: run for run in strict_json(answer.text)}


def rewrite_state(folder: Path, **fields: Any) -> None:
    path = folder / "state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


# ---- the damage the issue names ----


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("state.json", b"null", "state.json: must be a JSON object, not null"),
        ("state.json", b"[]", "state.json: must be a JSON object, not an array"),
        ("state.json", b'{"state": "finished"', "state.json: not valid JSON"),
        ("state.json", b"\xff\xfe{}", "state.json: not valid JSON"),
        ("state.json", b'{"lr": NaN}', "state.json: not valid JSON"),
        ("state.json", None, "state.json: missing"),
        ("config.json", b'{"depth": 1e999}', "config.json: not valid JSON"),
        ("config.json", b'"moons"', "config.json: must be a JSON object, not a string"),
    ],
)
def test_an_unreadable_state_or_config_lists_the_run_damaged_and_the_server_starts(
    tmp_path: Path, lines: list[str], name: str, content: bytes | None, reason: str
) -> None:
    write_run(tmp_path, GOOD, lines)
    folder = write_run(tmp_path, HURT, lines)
    if content is None:
        (folder / name).unlink()
    else:
        (folder / name).write_bytes(content)
    before = snapshot(tmp_path)

    good, hurt = RunStore(tmp_path).load()
    assert (good.id, good.state, hurt.id, hurt.state) == (GOOD, "finished", HURT, "damaged")
    assert (hurt.error or "").startswith(reason)
    with client(tmp_path) as http:
        runs = listed(http)
        assert runs[GOOD]["state"] == "finished"
        assert (runs[HURT]["state"], runs[HURT]["error"]) == ("damaged", hurt.error)
        # Its frames are intact: they are still exported, reported and replayed.
        assert http.get(f"/api/runs/{HURT}/export").text.splitlines() == lines
        assert http.get(f"/api/runs/{HURT}/report").status_code == 200
        with http.websocket_connect(f"/ws/runs/{HURT}") as ws:
            assert [ws.receive_text() for _ in lines] == lines
            error = strict_json(ws.receive_text())
            assert (error["type"], error["message"]) == (
                "error",
                f"run {HURT} is damaged: {hurt.error}",
            )
    assert snapshot(tmp_path) == before  # nothing rewritten, the damaged run included


def test_a_created_time_without_a_time_zone_is_damage_not_a_failed_start(
    tmp_path: Path, lines: list[str]
) -> None:
    write_run(tmp_path, GOOD, lines)
    rewrite_state(write_run(tmp_path, HURT, lines), created="2025-01-01T12:00:00")
    good, hurt = RunStore(tmp_path).load()  # sorting naive with aware times raised
    assert (good.id, hurt.id, hurt.state) == (GOOD, HURT, "damaged")
    assert (hurt.error or "").startswith("state.json: created: ")
    with client(tmp_path) as http:
        assert set(listed(http)) == {GOOD, HURT}


@pytest.mark.parametrize("field", ["step", "batch_size", "epoch", "lr"])
@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" + "0" * 400, '"many"', "true"])
def test_a_cut_off_run_whose_last_frame_has_a_bad_number_keeps_its_saved_progress(
    tmp_path: Path, lines: list[str], field: str, number: str
) -> None:
    last = json.loads(lines[-2])
    assert last["type"] == "frame"
    text = encode({**last, field: 0}).replace(f'"{field}":0', f'"{field}":{number}')
    folder = write_run(tmp_path, HURT, [*lines[:-2], text], RunState.RUNNING)
    rewrite_state(folder, step=0)  # saved before the last frame: its progress would count
    [run] = RunStore(tmp_path).load()  # int(1e999) raised OverflowError
    assert run.state is RunState.STOPPED
    assert (run.step, run.epoch, run.lr, run.batch_size) == (0, 0.0, 0.5, 32)  # as saved
    with client(tmp_path) as http:
        assert listed(http)[HURT]["step"] == 0


@pytest.mark.parametrize("text", ["5", "null", '{"a": 1}', '["x"]'])
def test_a_recovered_failure_whose_message_is_not_text_keeps_the_list_working(
    tmp_path: Path, lines: list[str], text: str
) -> None:
    failed = encode(state_event(4, "failed", message="-")).replace('"-"', text)
    write_run(tmp_path, GOOD, lines)
    write_run(tmp_path, HURT, [*lines[:-1], failed], RunState.RUNNING)
    with client(tmp_path) as http:
        runs = listed(http)  # the unvalidated message made this a 500
        assert (runs[HURT]["state"], runs[HURT]["error"]) == ("failed", None)
        assert runs[GOOD]["state"] == "finished"


BAD_LINES = [
    b"\xff\xfe\x00garbage",
    b"[1, 2]",
    b'"text"',
    b"{}",
    b'{"type": 5}',
    b'{"v":1,"type":"frame","step":NaN}',
    b'{"v":1,"type":"frame","step":3',  # cut off, then the next line was written
    b"\x00" * 40,
]


def test_damaged_lines_are_skipped_by_export_report_and_replay(
    tmp_path: Path, lines: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_run(tmp_path, HURT, lines)
    data = b""
    for number, line in enumerate(lines):  # bad lines after every good one, the last too
        data += line.encode() + b"\n"
        data += b"".join(bad + b"\n" for bad in BAD_LINES[number :: len(lines)])
    (folder / "frames.jsonl").write_bytes(data)

    with caplog.at_level(logging.WARNING, logger="covshift.web.store"):
        assert list(RunStore(tmp_path).lines(HURT)) == lines
    assert f"run {HURT}: skipped {len(BAD_LINES)} damaged lines of frames.jsonl" in caplog.text
    with client(tmp_path) as http:
        assert listed(http)[HURT]["state"] == "finished"  # bad lines do not damage a run
        csv_text = http.get(f"/api/runs/{HURT}/export?format=csv").text
        assert csv_text == "".join(csv_lines(lines))
        report = http.get(f"/api/runs/{HURT}/report")
        assert report.status_code == 200 and report.text == report_html(HURT, lines)
        with http.websocket_connect(f"/ws/runs/{HURT}") as ws:
            assert [ws.receive_text() for _ in lines] == lines


def test_records_of_the_wrong_shape_are_left_out_of_the_report_and_the_export(
    tmp_path: Path, lines: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Valid JSON with a "type", so the store passes them on, but not the protocol's fields.
    misshaped = [
        json.dumps({"v": 1, "type": "frame", "step": 3, "variants": 5}),
        json.dumps({"v": 1, "type": "frame", "step": 4, "variants": {"plain": {"loss": 1}}}),
        json.dumps({"v": 1, "type": "event", "kind": "lr"}),
    ]
    write_run(tmp_path, HURT, [lines[0], *misshaped, *lines[1:]])
    with client(tmp_path) as http, caplog.at_level(logging.WARNING):
        report = http.get(f"/api/runs/{HURT}/report")
        assert report.status_code == 200
        assert "damaged records left out of its report" in caplog.text
        assert http.get(f"/api/runs/{HURT}/export?format=csv").status_code == 200
    # A hello that cannot be read makes no report: a clear 409, not a 500.
    broken_hello = json.dumps({"v": 1, "type": "hello", "variants": 1})
    write_run(tmp_path / "other", HURT, [broken_hello, *lines[1:]])
    with client(tmp_path / "other") as http:
        answer = http.get(f"/api/runs/{HURT}/report")
        assert answer.status_code == 409 and "hello is damaged" in answer.json()["detail"]


def test_a_replay_that_fails_costs_an_error_message_not_the_connection(
    tmp_path: Path, lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise RuntimeError("a bug in the replay")  # stands in for any one not found yet

    write_run(tmp_path, HURT, lines)
    monkeypatch.setattr(RunStore, "replay", fail)
    with client(tmp_path) as http, http.websocket_connect(f"/ws/runs/{HURT}") as ws:
        error = strict_json(ws.receive_text())
        assert error["message"] == f"run {HURT}: its history could not be read (see the log)"
        ws.send_text("{}")  # still answered: the connection stays
        assert strict_json(ws.receive_text())["type"] == "error"


def test_a_line_longer_than_any_frame_is_skipped_without_holding_it(
    tmp_path: Path, lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "MAX_LINE_BYTES", max(map(len, lines)))
    folder = write_run(tmp_path, HURT, lines[:2])
    with (folder / "frames.jsonl").open("a") as file:
        file.write("x" * (3 * store.MAX_LINE_BYTES) + "\n" + lines[2] + "\n")
    assert list(RunStore(tmp_path).lines(HURT)) == lines[:3]


# ---- links out of the log directory ----


def test_a_run_folder_linked_outside_is_listed_damaged_and_never_written(
    tmp_path: Path, lines: list[str]
) -> None:
    outside = write_run(tmp_path / "outside", HURT, lines[:3], RunState.RUNNING, {"note": SECRET})
    outside_before = snapshot(outside)
    write_run(tmp_path / "logs", GOOD, lines)
    (tmp_path / "logs" / HURT).symlink_to(outside)

    good, hurt = RunStore(tmp_path / "logs").load()  # this recovered the run out there
    assert (good.id, hurt.id, hurt.state) == (GOOD, HURT, "damaged")
    assert hurt.error == "the run folder is a symbolic link; it is not followed"
    assert hurt.config == {}
    with client(tmp_path / "logs") as http:
        runs = listed(http)
        assert runs[HURT]["state"] == "damaged" and SECRET not in json.dumps(runs)
        for kind in ("jsonl", "csv"):
            assert http.get(f"/api/runs/{HURT}/export?format={kind}").text == ""
        assert http.get(f"/api/runs/{HURT}/report").status_code == 409
        with http.websocket_connect(f"/ws/runs/{HURT}") as ws:
            error = strict_json(ws.receive_text())
            assert error == {
                "v": SCHEMA_VERSION,
                "type": "error",
                "id": None,
                "message": f"run {HURT} is damaged: {hurt.error}",
            }
        assert http.delete(f"/api/runs/{HURT}").json()["state"] == "damaged"
    assert snapshot(outside) == outside_before


@pytest.mark.parametrize("name", FILES)
def test_a_file_linked_outside_is_neither_read_nor_written(
    tmp_path: Path, lines: list[str], name: str
) -> None:
    outside = write_run(
        tmp_path / "outside", HURT, [*lines, SECRET], RunState.RUNNING, {"note": SECRET}
    )
    folder = write_run(tmp_path / "logs", HURT, lines, RunState.RUNNING)
    (folder / name).unlink()
    (folder / name).symlink_to(outside / name)
    before = snapshot(tmp_path)

    [hurt] = RunStore(tmp_path / "logs").load()
    assert (hurt.state, hurt.error) == ("damaged", f"{name} is a symbolic link; it is not followed")
    with client(tmp_path / "logs") as http:
        assert SECRET not in http.get("/api/runs").text
        for kind in ("jsonl", "csv"):
            exported = http.get(f"/api/runs/{HURT}/export?format={kind}")
            assert exported.status_code == 200 and SECRET not in exported.text
        assert SECRET not in http.get(f"/api/runs/{HURT}/report").text
    assert snapshot(tmp_path) == before


def test_saving_and_creating_refuse_a_run_folder_replaced_by_a_link(
    tmp_path: Path, lines: list[str]
) -> None:
    outside = write_run(tmp_path / "outside", HURT, lines, RunState.RUNNING)
    before = snapshot(outside)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / HURT).symlink_to(outside)
    run_store = RunStore(tmp_path / "logs")
    info = RunInfo(
        id=HURT,
        state=RunState.STOPPED,
        created=datetime(2025, 1, 1, tzinfo=timezone.utc),
        config={},
        lr=0.5,
        batch_size=32,
        bn_momentum=None,
    )
    with pytest.raises(OSError):
        run_store.save(info)
    with pytest.raises(OSError):
        run_store.create(info, {})
    assert snapshot(outside) == before


# ---- generated damage ----

# JSON values of every type, with the numbers JSON cannot hold (NaN, ±Infinity, 1e999).
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["2025-01-01T12:00:00", "2025-01-01T12:00:00Z", "running", "damaged"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "v", "step", "state", "x"]), children, max_size=3
        )
    ),
    max_leaves=8,
)
RAW_NUMBERS = st.sampled_from([b"1e999", b"-1e999", b"NaN", b"Infinity", b"1" + b"0" * 400])


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity spelled bare, as JSON forbids


VALUES = st.one_of(JSON_VALUES.map(json_bytes), RAW_NUMBERS, st.binary(max_size=24))
Damage = tuple[str, Callable[[Path, Path], None]]


def in_file(name: str, change: Callable[[bytes], bytes]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.write_bytes(change(path.read_bytes()))

    return apply


def missing(name: str) -> Callable[[Path, Path], None]:
    return lambda folder, outside: (folder / name).unlink(missing_ok=True)


def linked(name: str) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        target = folder / name if name != "." else folder
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            for entry in target.iterdir():
                entry.unlink()
            target.rmdir()
        target.symlink_to(outside / name if name != "." else outside)

    return apply


def set_field(name: str, key: str, raw: bytes) -> Callable[[bytes], bytes]:
    """The file's JSON object (or, for frames.jsonl, its last frame) with key set to raw."""

    def change(data: bytes) -> bytes:
        head, _, last = (
            data.rstrip(b"\n").rpartition(b"\n") if name == "frames.jsonl" else (b"", b"", data)
        )
        try:
            record = json.loads(last)
        except ValueError:
            return data
        if not isinstance(record, dict):
            return data
        text = json.dumps({**record, key: "@@"}).encode().replace(b'"@@"', raw)
        return (head + b"\n" if head else b"") + text + (b"\n" if name == "frames.jsonl" else b"")

    return change


def at(fraction: float, data: bytes) -> int:
    return int(fraction * len(data))


FILE = st.sampled_from(FILES)
# Cut, garbled or replaced: frames.jsonl most often, so that runs not damaged as a whole
# (recovered from damaged frames, or with bad lines to skip) are common cases too.
EDITED = st.sampled_from(["config.json", "state.json", *["frames.jsonl"] * 4])
FRACTION = st.floats(0, 1)
DAMAGE: st.SearchStrategy[Damage] = st.one_of(
    st.builds(lambda n: ("edit", missing(n)), FILE),
    st.builds(lambda n, f: ("edit", in_file(n, lambda d: d[: at(f, d)])), EDITED, FRACTION),
    st.builds(
        lambda n, f, b: ("edit", in_file(n, lambda d: d[: at(f, d)] + b + d[at(f, d) + len(b) :])),
        EDITED,
        FRACTION,
        st.binary(min_size=1, max_size=16),
    ),
    st.builds(
        lambda n, f, v: ("edit", in_file(n, lambda d: d[: at(f, d)] + v + b"\n" + d[at(f, d) :])),
        EDITED,
        FRACTION,
        VALUES,
    ),
    st.builds(lambda n, v: ("edit", in_file(n, lambda d: v)), FILE, VALUES),
    st.builds(
        lambda k, v: ("edit", in_file("state.json", set_field("state.json", k, v))),
        st.sampled_from(
            ["created", "ended", "state", "step", "epoch", "lr", "batch_size", "error"]
        ),
        VALUES,
    ),
    st.builds(
        lambda k, v: ("edit", in_file("config.json", set_field("config.json", k, v))),
        st.sampled_from(["depth", "dataset", "data_dir"]),
        VALUES,
    ),
    st.builds(
        lambda k, v: ("edit", in_file("frames.jsonl", set_field("frames.jsonl", k, v))),
        st.sampled_from(["step", "epoch", "lr", "batch_size", "kind", "state", "message", "type"]),
        VALUES,
    ),
    st.builds(lambda n: ("link", linked(n)), FILE),
    st.just(("folder", linked("."))),
)


@pytest.mark.slow  # 50 cases, each a fresh log directory and app start: ~10 s
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure reproduces
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    state=st.sampled_from([state for state in RunState if state is not RunState.DAMAGED]),
    damage=st.lists(DAMAGE, min_size=1, max_size=3),
)
def test_generated_damage_never_stops_the_server_or_touches_other_runs(
    lines: list[str], state: RunState, damage: list[Damage]
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root, outside = Path(scratch) / "logs", Path(scratch) / "outside" / HURT
        write_run(root, GOOD, lines)
        write_run(outside.parent, HURT, [*lines, SECRET], RunState.RUNNING, {"note": SECRET})
        folder = write_run(root, HURT, lines if state.terminal else lines[:-1], state)
        # Links last (the folder's own last of all): an edit must not reach through one.
        for _, apply in sorted(damage, key=lambda d: ("edit", "link", "folder").index(d[0])):
            apply(folder, outside)
        untouched = {GOOD: snapshot(root / GOOD), "outside": snapshot(outside)}

        runs = {run.id: run for run in RunStore(root).load()}
        assert runs[GOOD].state is RunState.FINISHED
        hurt = runs.get(HURT)
        event(f"the damaged run is listed {hurt.state.value if hurt else 'not at all'}")
        if hurt is None:  # not a run at all: a folder holding none of its files
            assert not any(os.path.lexists(folder / name) for name in FILES)
        elif hurt.state is RunState.DAMAGED:
            assert hurt.error
        damaged = snapshot(folder) if hurt is not None and hurt.state is RunState.DAMAGED else None

        with client(root) as http:
            answer = listed(http)
            assert answer[GOOD]["state"] == "finished" and SECRET not in json.dumps(answer)
            for run_id in answer:
                for kind in ("jsonl", "csv"):
                    exported = http.get(f"/api/runs/{run_id}/export?format={kind}")
                    assert exported.status_code == 200 and SECRET not in exported.text
                    if kind == "csv":
                        rows = list(csv.reader(io.StringIO(exported.text)))
                        assert len({len(row) for row in rows}) <= 1  # whole rows only
                report = http.get(f"/api/runs/{run_id}/report")
                assert report.status_code in (200, 409) and SECRET not in report.text
            assert http.get(f"/api/runs/{GOOD}/export").text.splitlines() == lines

        assert {GOOD: snapshot(root / GOOD), "outside": snapshot(outside)} == untouched
        if damaged is not None:
            assert snapshot(folder) == damaged  # a damaged run is never written
