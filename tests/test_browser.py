"""The dashboard in a real browser (Debian's Chromium via Playwright) against a live server.

Needs `scripts/setup-browser` (Chromium, Playwright); see below for when they may skip.
One server for the module (its demo run is small); each test opens a fresh page.
"""

from __future__ import annotations

import gzip
import html
import json
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, demo_server
from covshift.web import rules as rules_module
from serverkit import SMALL, ThreadedServer, wait_for

# scripts/test sets COVSHIFT_REQUIRE_BROWSER=1: there a missing browser is a failure,
# never a skip. Elsewhere (a bare `pytest`) the tests skip with the reason.
_REQUIRED = os.environ.get("COVSHIFT_REQUIRE_BROWSER") == "1"
try:
    from playwright import sync_api
except ImportError:
    if _REQUIRED:
        raise
    pytest.skip("playwright is not installed (run scripts/setup-browser)", allow_module_level=True)
if not os.path.exists(CHROMIUM):
    if _REQUIRED:
        raise RuntimeError(f"no Chromium at {CHROMIUM} (run scripts/setup-browser)")
    pytest.skip(f"no Chromium at {CHROMIUM} (run scripts/setup-browser)", allow_module_level=True)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    with demo_server(tmp_path_factory.mktemp("covshift-logs")) as live:
        yield live


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A page of the dashboard, with the console errors it logged."""

    def __init__(self, page: Any, server: ThreadedServer) -> None:
        self.page = page
        self.server = server
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def wait_js(self, expression: str, timeout: float = 15.0) -> Any:
        return self.page.wait_for_function(expression, timeout=timeout * 1000).json_value()

    def run_id(self) -> str:
        run_id: str = self.wait_js("() => window.covshift?.runId")
        return run_id

    def wait_frames(self, count: int = 5) -> None:
        self.wait_js(f"() => window.covshift?.state.frames >= {count}")

    def enter(self, selector: str, text: str) -> None:
        self.page.fill(selector, text)
        self.page.press(selector, "Enter")


def demo_url(server: ThreadedServer) -> str:
    """The page on the demo run (live, or stopped by a test above), whatever runs other
    tests started: without a run named, the page shows the newest one, which may be a
    sweep (no frames) or a lesson another test left."""
    (demo,) = [run for run in server.runs() if run["demo"]]
    return f"{server.url}/#run={demo['id']}"


@pytest.fixture
def dashboard(chromium: Any, server: ThreadedServer) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = Page(context.new_page(), server)
    page.page.goto(demo_url(server))
    yield page
    context.close()


def test_page_loads_without_console_errors_and_charts_fill(dashboard: Page) -> None:
    dashboard.wait_frames(20)
    # Every chart in view drew data: Plotly traces with points, the bands' canvas its steps.
    dashboard.wait_js(
        """() => {
          const filled = (p) => p.figure?.points > 5 || p.data?.some((trace) => trace.x.length > 5);
          const lesson = [...document.querySelectorAll('#lesson .plot')];
          const loss = [...document.querySelectorAll('#overview .plot')];
          return lesson.length === 2 && lesson.every(filled) && loss.length === 2
            && loss.every(filled);
        }"""
    )
    # Charts out of view wait to be drawn until they are scrolled to.
    dashboard.page.locator("#measuring").scroll_into_view_if_needed()
    dashboard.wait_js(
        """() => {
          const measuring = [...document.querySelectorAll('#measuring .plot')];
          const drift = measuring.filter((p) => !p.closest('.card.ics'));
          return measuring.length === 2 && drift.length === 1
            && drift[0].data?.some((trace) => trace.x.length > 5);
        }"""
    )
    # Layer 1 sits below the lesson and the loss and accuracy row: drawn once in view.
    dashboard.page.locator("#layer-1").scroll_into_view_if_needed()
    dashboard.wait_js(
        "() => [...document.querySelectorAll('#layer-1 canvas')].every((c) => c.width > 5)"
    )
    dashboard.wait_js(
        "() => document.querySelector('#layer-1 .dist .plot').figure?.series.length === 2"
    )
    dashboard.page.evaluate("() => window.scrollTo(0, 0)")
    status = dashboard.page.inner_text(".topbar")
    assert "live" in status
    assert dashboard.js("() => window.covshift.scheduler.stats.renders") > 5
    ARTIFACTS.mkdir(exist_ok=True)
    dashboard.page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    assert dashboard.errors == []


FIRST_SCREEN_FILLED = """() => {
  const filled = (p) => p.figure?.points > 5;
  const shown = [...document.querySelectorAll('#lesson .plot, #overview .plot')];
  return shown.length === 4 && shown.every(filled);
}"""
BN_DRAWN = """() => document.querySelector('#layer-1 .bn .plot').data
  ?.some((trace) => trace.x.length > 5)"""


def test_plotly_js_loads_when_a_chart_first_needs_it(chromium: Any, server: ThreadedServer) -> None:
    """plotly.js (1.2 MB, ~0.3 s to start) is not part of the first screen, whose charts are
    canvases: it loads when a Plotly chart first draws, and that chart draws once it came."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    held: list[Any] = []
    context.route("**/vendor/plotly-basic.min.js", lambda route: held.append(route))
    page = Page(context.new_page(), server)
    try:
        page.page.goto(demo_url(server))
        page.wait_js(FIRST_SCREEN_FILLED)
        page.page.wait_for_timeout(1000)  # two redraw turns more
        assert held == [] and page.js("() => typeof window.Plotly") == "undefined"
        page.page.locator("#layer-1 .bn").scroll_into_view_if_needed()
        for _ in range(100):  # the request comes while Playwright waits
            if held:
                break
            page.page.wait_for_timeout(100)
        assert len(held) == 1, "scrolled to, the BN chart asked for plotly.js"
        page.page.wait_for_timeout(1000)  # two redraw turns: the BN chart asked again
        assert page.js("() => document.querySelector('#layer-1 .bn .plot').data") is None
        held[0].continue_()
        page.wait_js(BN_DRAWN)
        assert len(held) == 1, "asked for once"
        assert page.errors == []
    finally:
        context.close()


def test_a_missing_plotly_js_is_said_and_the_first_screen_still_draws(
    chromium: Any, server: ThreadedServer
) -> None:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.route("**/vendor/plotly-basic.min.js", lambda route: route.fulfill(status=404))
    page = Page(context.new_page(), server)
    try:
        page.page.goto(demo_url(server))
        page.wait_js(FIRST_SCREEN_FILLED)
        page.page.locator("#layer-1 .bn").scroll_into_view_if_needed()
        said = lambda: any("plotly.js did not load" in error for error in page.errors)  # noqa: E731
        for _ in range(150):  # the console's messages come while Playwright waits
            if said():
                break
            page.page.wait_for_timeout(100)
        assert said(), page.errors
    finally:
        context.close()


def test_the_first_requests_come_from_the_preloads_each_once(dashboard: Page) -> None:
    # index.html preloads every module and the first API answers: none may be fetched twice
    # (a preload the page does not use is a second request, and Chromium warns about it).
    warnings: list[str] = []
    dashboard.page.on("console", lambda m: m.type == "warning" and warnings.append(m.text))
    dashboard.page.reload()
    dashboard.wait_frames(3)
    dashboard.page.wait_for_timeout(3500)  # Chromium warns ~3 s after an unused preload
    fetched = dashboard.js(
        """() => performance.getEntriesByType('resource')
            .map((r) => [new URL(r.name).pathname, r.initiatorType])"""
    )
    modules = [path for path, _ in fetched if path.startswith("/js/")]
    assert len(modules) == len(set(modules)) >= 30, modules
    rules = [kind for path, kind in fetched if path == "/api/rules"]
    assert rules == ["link"], fetched  # asked once, by the preload, and read from it
    assert [kind for path, kind in fetched if path == "/api/runs"][:1] == ["link"]
    assert not [w for w in warnings if "preload" in w], warnings
    assert dashboard.errors == []


def pumped(page: Any, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll predicate() until truthy, letting Playwright deliver its events meanwhile (the
    sync API hands a page's websocket frames to listeners only inside its own calls, so a
    plain sleep would never see a new one)."""
    end = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        page.wait_for_timeout(50)
    return value


def test_the_page_joins_with_one_history_and_asks_for_the_tap_it_shows(dashboard: Page) -> None:
    """docs/protocol.md: the page names its view; its history comes as one gzip message,
    live frames carry only the shown tap's histograms and one BN channel, and choosing
    another tap asks for it and draws it over the whole history."""
    page = dashboard.page
    sockets: list[tuple[list[str | bytes], list[str]]] = []

    def listen(ws: Any) -> None:
        received: list[str | bytes] = []
        sent: list[str] = []
        sockets.append((received, sent))
        ws.on("framereceived", lambda payload: received.append(payload))
        ws.on("framesent", lambda payload: sent.append(payload))

    page.on("websocket", listen)
    page.reload()
    dashboard.wait_frames(5)

    def sent_all() -> list[str]:
        return [m for _, sent in sockets for m in sent]

    def streaming() -> tuple[list[str | bytes], list[str]] | None:
        # The reloaded page's socket, once live frames follow its history: the first
        # document connects after its load event (main.js awaits the rules first), so it
        # may still open one while the reload is under way, and a loaded machine can take
        # a while before the newest socket streams.
        for received, sent in reversed(sockets):
            frames = [m for m in received[2:] if isinstance(m, str) and '"type":"frame"' in m]
            if frames:
                return received, sent
        return None

    received, _ = pumped(page, streaming)
    hello, history = received[0], received[1]
    came = [m[:60] if isinstance(m, str) else f"{len(m)} bytes" for m in received[:4]]
    assert isinstance(hello, str) and json.loads(hello)["type"] == "hello", came
    assert isinstance(history, bytes), came
    joined = json.loads(gzip.decompress(history))
    assert joined["type"] == "history" and any(m["type"] == "frame" for m in joined["messages"])
    live = next(json.loads(m) for m in received[2:] if isinstance(m, str) and '"type":"frame"' in m)
    layer = live["variants"]["bn"]["layers"][0]
    assert "counts" in layer["taps"]["act_input"] and "counts" not in layer["taps"]["act_output"]
    assert "percentiles" in layer["taps"]["act_output"]
    assert layer["bn"]["channels"] == [0] and len(layer["bn"]["running_mean"]) == 1

    page.select_option("#view-tap", "act_output")
    pumped(page, lambda: any('"type":"view"' in m and '"act_output"' in m for m in sent_all()))
    # The new history replaces the old: every kept column has act_output's histogram.
    dashboard.wait_js(
        """() => {
          const columns = window.covshift.state.columns.onStride;
          return columns.length > 3 && columns.every((c) =>
            Array.isArray(c.variants.plain?.layers?.[0]?.taps?.act_output?.counts));
        }"""
    )
    assert dashboard.errors == []


def test_the_lesson_is_on_the_first_screen_at_1280x720(
    chromium: Any, server: ThreadedServer
) -> None:
    # Plain and BN side by side for the last hidden layer, the current distribution beside
    # them, and the claim checked on the numbers: all in view with nothing scrolled.
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    page = Page(context.new_page(), server)
    try:
        page.page.goto(server.url + "/")
        page.wait_js(
            """() => {
              const plots = [...document.querySelectorAll('#lesson .plot')];
              return plots.length === 2
                && plots.every((p) => p.figure?.points > 5 || p.data?.some((t) => t.x.length > 5));
            }""",
            timeout=10,
        )
        boxes = page.js(
            """() => [...document.querySelectorAll('#lesson .card')].map((card) => {
                 const box = card.getBoundingClientRect();
                 return [box.top, box.bottom, box.left, box.right];
               })"""
        )
        assert len(boxes) == 2
        for top, bottom, left, right in boxes:
            assert top >= 0 and bottom <= 720 and left >= 0 and right <= 1280
        panels = page.js(
            "() => document.querySelector('#lesson .lesson-bands .plot').figure.panels"
        )
        assert panels == ["plain", "BN"]  # one panel per network, plain first
        claim = page.page.inner_text("#lesson .claim")
        assert "plain" in claim and "BN" in claim and "steps" in claim
        assert page.js("() => window.scrollY") == 0
        assert page.errors == []
    finally:
        context.close()


def test_learning_rate_and_batch_size_change_the_run_and_its_frames(
    dashboard: Page, server: ThreadedServer
) -> None:
    dashboard.wait_frames()
    run_id = dashboard.run_id()

    dashboard.enter("#control-lr", "0.05")
    dashboard.page.wait_for_selector("[data-field=lr] .msg.ok")
    assert server.run(run_id)["lr"] == pytest.approx(0.05)
    dashboard.wait_js("() => window.covshift.state.latest.lr === 0.05")

    dashboard.enter("#control-batch_size", "16")
    dashboard.page.wait_for_selector("[data-field=batch_size] .msg.ok")
    assert server.run(run_id)["batch_size"] == 16
    dashboard.wait_js("() => window.covshift.state.latest.batch_size === 16")
    # The changes are marked on the time axes (and listed as events).
    kinds = dashboard.js("() => window.covshift.state.events.map((e) => e.kind)")
    assert {"lr", "batch_size"} <= set(kinds)

    # Out of bounds: refused in place with the reason, and nothing is sent.
    dashboard.enter("#control-lr", "20")
    message = dashboard.page.inner_text("[data-field=lr] .msg")
    assert "10" in message
    assert dashboard.page.get_attribute("#control-lr", "aria-invalid") == "true"
    assert server.run(run_id)["lr"] == pytest.approx(0.05)
    assert dashboard.errors == []


def test_batch_size_one_explains_why_bn_cannot_train(
    dashboard: Page, server: ThreadedServer
) -> None:
    dashboard.wait_frames()
    run_id = dashboard.run_id()
    dashboard.page.fill("#control-batch_size", "1")
    dashboard.page.wait_for_selector(".batch-note:not([hidden])")
    dashboard.page.press("#control-batch_size", "Enter")
    banner = dashboard.page.wait_for_selector(".banner.warn")
    assert "BatchNorm cannot train on batch size 1" in banner.inner_text()
    assert server.run(run_id)["batch_size"] == 1
    dashboard.enter("#control-batch_size", "60")
    dashboard.page.wait_for_selector(".banner.warn", state="detached", timeout=15_000)


def test_pause_step_and_resume(dashboard: Page, server: ThreadedServer) -> None:
    dashboard.wait_frames()
    run_id = dashboard.run_id()
    dashboard.page.click("#pause-button")
    wait_for(lambda: server.run(run_id)["state"] == "paused")
    dashboard.wait_js("() => window.covshift.state.runState === 'paused'")
    assert dashboard.page.inner_text("#pause-button") == "Resume"
    paused_at = server.run(run_id)["step"]
    dashboard.page.wait_for_timeout(400)
    assert server.run(run_id)["step"] == paused_at

    dashboard.page.click("#step-button")
    wait_for(lambda: server.run(run_id)["step"] == paused_at + 1)
    # The step shows at once: its frame on the charts, its count in the top bar (before the
    # next poll of the run list, 2 s away).
    dashboard.wait_js(f"() => window.covshift.state.latest?.step === {paused_at}", timeout=1.5)
    dashboard.wait_js(
        f"() => document.querySelector('#st-step').textContent === '{paused_at + 1:,}'",
        timeout=1.5,
    )

    dashboard.page.click("#pause-button")
    wait_for(lambda: server.run(run_id)["state"] == "running")
    wait_for(lambda: server.run(run_id)["step"] > paused_at + 50)
    dashboard.wait_js("() => window.covshift.state.runState === 'running'")
    assert dashboard.errors == []


def test_language_switch_is_remembered(dashboard: Page) -> None:
    dashboard.wait_frames()
    dashboard.page.click("[data-lang=ko]")
    assert "은닉층" in dashboard.page.inner_text("#layer-1 .layer-title")
    dashboard.page.reload()
    # The title is written once the run's hello has built the layers: wait for its words,
    # not only for the element (it failed once when read in between).
    dashboard.wait_js(
        "() => document.querySelector('#layer-1 .layer-title')?.textContent.includes('은닉층')"
    )
    dashboard.page.click("[data-lang=en]")
    assert "Hidden layer" in dashboard.page.inner_text("#layer-1 .layer-title")


def test_one_typed_change_is_one_event_one_marker_and_one_report_row(
    dashboard: Page, server: ThreadedServer
) -> None:
    dashboard.wait_frames()
    run_id = dashboard.run_id()
    values = [0.031, 0.032, 0.033]
    # Count what the page sends: each typed value must leave the page once.
    dashboard.js(
        """() => {
          window.sentLr = [];
          const send = WebSocket.prototype.send;
          WebSocket.prototype.send = function (data) {
            const msg = JSON.parse(data);
            if (msg.type === "control" && "lr" in msg) window.sentLr.push(msg.lr);
            return send.call(this, data);
          };
        }"""
    )
    for value in values:
        # Enter sends it; leaving the box (Tab) fires "change" too, which must not resend.
        dashboard.enter("#control-lr", str(value))
        dashboard.page.press("#control-lr", "Tab")
        dashboard.page.wait_for_selector("[data-field=lr] .msg.ok")
        wait_for(lambda value=value: server.run(run_id)["lr"] == pytest.approx(value))
    # Typing the value the run already has changes nothing and records nothing.
    dashboard.enter("#control-lr", str(values[-1]))
    dashboard.page.press("#control-lr", "Tab")
    dashboard.page.wait_for_timeout(500)
    assert dashboard.js("() => window.sentLr") == values
    ours = f"(e) => e.kind === 'lr' && {values}.includes(e.value)"
    dashboard.wait_js(f"() => window.covshift.state.events.filter({ours}).length >= 3")
    dashboard.page.wait_for_timeout(300)
    events = dashboard.js(f"() => window.covshift.state.events.filter({ours})")
    assert [e["value"] for e in events] == values
    steps = [e["step"] for e in events]
    # One marker per change on the loss chart and on the accuracy chart.
    # (Each chart's next redraw draws them; the dashed lines it drew are in its figure.)
    dashboard.wait_js(
        f"""() => ['loss', 'accuracy'].every((card) =>
          document.querySelector(`#overview .card.${{card}} .plot`).figure?.lines
            .some((x) => x === {steps[-1]}))"""
    )
    per_chart = dashboard.js(
        f"""() => {{
          const counts = {{}};
          for (const card of ['loss', 'accuracy']) {{
            const plot = document.querySelector(`#overview .card.${{card}} .plot`);
            for (const x of plot.figure.lines) {{
              if ({steps}.includes(x)) counts[card] = (counts[card] ?? 0) + 1;
            }}
          }}
          return counts;
        }}"""
    )
    assert per_chart == {"loss": 3, "accuracy": 3}, per_chart
    report = server.get_text(f"/api/runs/{run_id}/report")
    rows = [
        html.unescape(row) for row in re.findall(r"<tr>(.*?)</tr>", report, re.S) if ">lr<" in row
    ]
    for value in values:  # each change once ("previous" may name the value of the one before)
        pattern = re.compile(r"→ " + re.escape(str(value)) + r"(?![\d.])")
        assert sum(1 for row in rows if pattern.search(row)) == 1, (value, rows)
    assert dashboard.errors == []


def test_the_page_enforces_the_bound_the_server_states(
    chromium: Any, server: ThreadedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page holds no copy of a bound: change the server's rule and the page follows it.
    stricter = rules_module.rules().model_copy(deep=True)
    stricter.bounds["batch_size"].max = 100
    monkeypatch.setattr(rules_module, "rules", lambda: stricter)
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = Page(context.new_page(), server)
    try:
        page.page.goto(server.url + "/")
        page.wait_frames()
        run_id = page.run_id()
        before = server.run(run_id)["batch_size"]
        page.enter("#control-batch_size", "200")
        message = page.page.inner_text("[data-field=batch_size] .msg")
        assert "100" in message
        assert page.page.get_attribute("#control-batch_size", "aria-invalid") == "true"
        assert "[1, 100]" in page.page.inner_text("[data-field=batch_size] .bounds")
        assert server.run(run_id)["batch_size"] == before
    finally:
        context.close()


def test_page_reconnects_after_the_server_restarts(dashboard: Page, server: ThreadedServer) -> None:
    dashboard.wait_frames()
    before = dashboard.run_id()
    server.stop()
    dashboard.wait_js("() => window.covshift.connection.state === 'waiting'", timeout=10)
    dashboard.page.wait_for_selector(".banner.warn")
    server.start()
    # The demo run lives in memory, so the restarted server has a new one: the page finds
    # it, reconnects and streams again.
    dashboard.wait_js("() => window.covshift.connection.state === 'open'", timeout=20)
    dashboard.wait_js(f"() => window.covshift.runId !== {before!r}", timeout=20)
    dashboard.wait_js("() => window.covshift.state.frames >= 5", timeout=20)
    # While the server was down the browser logged refused connections; nothing else.
    assert [e for e in dashboard.errors if "ERR_CONNECTION_REFUSED" not in e] == []


def test_change_markers_have_a_key_and_hover_away_from_the_toolbar(dashboard: Page) -> None:
    dashboard.wait_frames()
    dashboard.enter("#control-lr", "0.041")
    dashboard.page.wait_for_selector("[data-field=lr] .msg.ok")
    dashboard.wait_js("() => window.covshift.state.events.some((e) => e.value === 0.041)")
    kinds = dashboard.js(
        "() => [...document.querySelectorAll('#markers-key .marker-item')].map((i) => "
        "[i.dataset.kind, getComputedStyle(i.querySelector('.marker-swatch')).borderTopColor,"
        " i.innerText])"
    )
    assert [k for k, _, _ in kinds] == ["lr", "batch_size", "bn_momentum", "diverged", "skipped"]
    assert dict((k, text) for k, _, text in kinds)["lr"] == "learning rate"
    # The key's colour is the colour of the lr markers drawn on the accuracy chart.
    drawn = dashboard.wait_js(
        """() => {
          const plot = document.querySelector('#overview .card.accuracy .plot');
          const mark = plot.figure?.marks.find((m) => m.text.includes('0.041'));
          return mark ? [mark.color, mark.y, plot.figure.yRange[0]] : null;
        }"""
    )
    color, y, bottom = drawn
    swatch = dict((k, c) for k, c, _ in kinds)["lr"]
    rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    assert swatch == f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"
    assert bottom <= y < 0.0  # at the bottom of the accuracy panel


def test_heatmaps_carry_a_colour_scale_axis_titles_and_round_ends(dashboard: Page) -> None:
    dashboard.wait_frames()
    dashboard.page.locator("#layer-1").scroll_into_view_if_needed()
    # Drawn: the ends of its bins are written and its axes named (both set by one update).
    dashboard.wait_js(
        "() => (document.querySelector('#layer-1 .y-top')?.textContent ?? '') !== ''"
        " && (document.querySelector('#layer-1 .heatmap-axes')?.textContent ?? '') !== ''"
    )
    key = dashboard.page.inner_text("#layer-1 .heatmap-key")
    assert "outside the range" in key and "up: activation input" in key
    assert "across: steps" in key
    assert dashboard.js(
        "() => getComputedStyle(document.querySelector('#layer-1 .heatmap-scale'))"
        ".backgroundImage.startsWith('linear-gradient')"
    )
    ends = dashboard.js(
        "() => [...document.querySelectorAll('#layer-1 .y-top, #layer-1 .y-bottom')]"
        ".map((e) => e.textContent).filter(Boolean)"
    )
    assert ends
    for end in ends:  # at most two significant digits, e.g. 16 rather than 15.63
        digits = end.lstrip("-").replace(".", "").lstrip("0")
        assert len(digits.rstrip("0")) <= 2, ends


def test_the_runs_list_updates_in_place_so_focus_stays(dashboard: Page) -> None:
    dashboard.wait_frames()
    button = dashboard.page.locator(".runs-list button.current")
    button.focus()
    dashboard.js("() => { document.activeElement.dataset.marked = 'yes'; }")
    before = dashboard.page.inner_text(".runs-list button.current .run-meta")
    dashboard.page.wait_for_timeout(4500)  # two polls of the run list, the step moved on
    assert dashboard.page.inner_text(".runs-list button.current .run-meta") != before
    # The same element, still focused: nothing was rebuilt under the keyboard or the mouse.
    assert dashboard.js("() => document.activeElement.dataset.marked") == "yes"


def test_live_panels_write_to_the_page_only_what_changed(dashboard: Page) -> None:
    """The status bar and the controls update twice a second. Text and flags that did not
    change are not written again (the browser lays out and repaints the page after every
    write, even of the same value), and a number that changed is changed in its text node
    rather than replaced by a new one."""
    dashboard.wait_frames()
    # Settled: connected, the run running and its controls open.
    dashboard.wait_js(
        "() => document.querySelector('#conn').dataset.state === 'open'"
        " && !document.querySelector('#control-lr').disabled"
        " && document.querySelector('#live-controls .no-run').hidden"
    )
    dashboard.js(
        """() => {
      window.__writes = { added: 0, attributes: [], text: 0 };
      const seen = new MutationObserver((records) => {
        for (const r of records) {
          if (r.type === "childList") window.__writes.added += r.addedNodes.length;
          if (r.type === "attributes") window.__writes.attributes.push(
            `${r.target.tagName}.${r.target.className} ${r.attributeName}`);
          if (r.type === "characterData") window.__writes.text += 1;
        }
      });
      for (const selector of [".topbar", "#live-controls"]) {
        seen.observe(document.querySelector(selector),
          { subtree: true, childList: true, attributes: true, characterData: true });
      }
    }"""
    )
    dashboard.page.wait_for_timeout(3000)  # six updates of the status bar and the controls
    writes = dashboard.js("() => window.__writes")
    assert writes["text"] > 0, "the step counter moved on in place"
    assert writes["added"] == 0, "no text or element was replaced"
    assert writes["attributes"] == [], f"attributes written again: {writes['attributes']}"


def test_a_bn_channel_past_the_width_is_refused_in_place(dashboard: Page) -> None:
    sent: list[str] = []
    dashboard.page.on("websocket", lambda ws: ws.on("framesent", lambda m: sent.append(m)))
    dashboard.page.reload()
    dashboard.wait_frames()
    # Typed digit by digit, a channel is asked of the server once, when the typing pauses:
    # from channel 2, typing "12" passes through channel 1 on the way.
    dashboard.page.fill("#view-channel", "2")
    dashboard.page.wait_for_timeout(1000)  # Playwright delivers the socket's events meanwhile
    sent.clear()
    dashboard.page.fill("#view-channel", "")
    dashboard.page.type("#view-channel", "12", delay=60)
    dashboard.page.wait_for_timeout(1000)
    views = [json.loads(m) for m in sent if '"type":"view"' in m]
    assert [v["channel"] for v in views] == [11], views
    width = dashboard.js("() => window.covshift.state.hello.config.width")
    dashboard.page.fill("#view-channel", str(width + 1))
    assert dashboard.page.get_attribute("#view-channel", "aria-invalid") is not None
    assert f"1 to {width}" in dashboard.page.inner_text("#view-channel-msg")
    dashboard.page.fill("#view-channel", "2")
    assert dashboard.page.get_attribute("#view-channel", "aria-invalid") is None
    assert dashboard.page.inner_text("#view-channel-msg") == ""
    assert dashboard.js("() => window.covshift.view.channel") == 1


def test_choosing_no_preset_puts_back_the_defaults(dashboard: Page) -> None:
    dashboard.wait_frames()
    dashboard.page.click("#new-run > summary")
    dashboard.page.select_option("#setup-preset", "noisy-bn")

    def checked() -> list[str]:
        boxes = dashboard.page.query_selector_all("#setup-variants input:checked")
        return [box.get_attribute("value") or "" for box in boxes]

    assert checked() == ["plain", "bn", "noisy_bn"]
    dashboard.page.select_option("#setup-preset", "")
    assert (
        checked()
        == dashboard.js("() => fetch('/api/rules').then((r) => r.json())")["defaults"]["variants"]
    )


def test_stop_run_asks_first(dashboard: Page, server: ThreadedServer) -> None:
    # Last in this module: it stops the demo run the other tests watch.
    dashboard.wait_frames()
    run_id = dashboard.run_id()
    answers = iter([False, True])
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        (dialog.accept if next(answers) else dialog.dismiss)()

    dashboard.page.on("dialog", answer)
    dashboard.page.click("#stop-button")
    dashboard.page.wait_for_timeout(500)
    assert server.run(run_id)["state"] == "running"  # dismissed: nothing stopped
    dashboard.page.click("#stop-button")
    wait_for(lambda: server.run(run_id)["state"] == "stopped")
    assert len(asked) == 2 and "Stop this run?" in asked[0]


def test_before_the_first_data_the_page_says_it_is_loading(
    chromium: Any, server: ThreadedServer
) -> None:
    # The run's websocket held silent (as on a slow link): nothing the page says may be
    # about the run's contents, which it does not know yet.
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    page = Page(context.new_page(), server)
    try:
        page.page.route_web_socket("**/ws/runs/**", lambda ws: None)
        page.page.goto(server.url + "/")
        page.page.wait_for_selector("#live-controls .no-run:not([hidden])")
        page.page.wait_for_timeout(2500)  # a poll of the run list has come in meanwhile
        assert page.page.inner_text("#live-controls .no-run") == "Loading the run…"
        for field in ("lr", "batch_size"):
            assert page.page.inner_text(f"[data-field={field}] .now-value") == "—"
        assert "no BN variant" not in page.page.inner_text("#live-controls")
    finally:
        context.close()


def test_the_step_cursor_sits_where_plotly_draws_that_step(dashboard: Page) -> None:
    # The page places the cursor from documented layout fields only; Plotly's own internal
    # mapping is the oracle here (only the test reads it). The first screen's charts are
    # canvases (their own test below); layer 1's BN panels and the drift chart are Plotly's,
    # drawn once scrolled into view.
    dashboard.wait_frames(20)
    plotly_charts = "#layer-1 .bn .plot, #measuring .plot"
    dashboard.page.locator("#layer-1 .bn").scroll_into_view_if_needed()
    dashboard.wait_js(
        "() => document.querySelector('#layer-1 .bn .plot')?._fullLayout !== undefined"
    )
    dashboard.page.locator("#measuring").scroll_into_view_if_needed()
    # The predicate below is polled until every chart has drawn, so it must not be async:
    # a promise is truthy at once, whatever it resolves to.
    dashboard.page.evaluate(
        "async () => { window.cursorPlaces = (await import('/js/charts/plot.js')).cursorPlaces; }"
    )
    found = dashboard.wait_js(
        """() => {
          const { cursorPlaces } = window;
          const results = [];
          // Those on the page (a run without gradient ICS hides its card).
          const shown = [...document.querySelectorAll('{PLOTLY}')]
            .filter((plot) => plot.getClientRects().length > 0);
          for (const plot of shown) {
            const full = plot._fullLayout;
            if (!full || !plot.layout) return null;
            for (const name of Object.keys(full).filter((k) => /^xaxis\\d*$/.test(k))) {
              const axis = full[name];
              const step = (axis.range[0] + axis.range[1]) / 2;
              const axisName = name.replace('axis', '');
              const places = cursorPlaces(plot.layout, plot.clientWidth, step, [axisName]);
              if (places.length !== 1) return null;
              const y = full[axis.anchor.replace(/^y(\\d*)$/, 'yaxis$1')];
              results.push([places[0].left, axis._offset + axis.l2p(step),
                            places[0].top, y._offset, places[0].height, y._length]);
            }
          }
          return results.length >= 3 ? results : null;
        }""".replace("{PLOTLY}", plotly_charts)
    )
    for left, expected_left, top, expected_top, height, expected_height in found:
        assert abs(left - expected_left) < 1.0
        assert abs(top - expected_top) < 1.0 and abs(height - expected_height) < 1.0
    assert dashboard.errors == []


def test_hovering_a_canvas_chart_shows_its_numbers_and_moves_every_cursor(
    dashboard: Page, tmp_path: Path
) -> None:
    dashboard.wait_frames(20)
    page = dashboard.page
    page.evaluate(
        """async () => {
          window.cursorPlaces = (await import('/js/charts/plot.js')).cursorPlaces;
          window.columnsOf = (await import('/js/state.js')).columnsOf;
        }"""
    )
    bands = "#lesson .lesson-bands .plot"
    dashboard.wait_js(f"() => document.querySelector('{bands}').figure?.points > 10")
    # The middle of BN's panel (the second), half way down.
    x, y = dashboard.js(
        f"""() => {{
          const plot = document.querySelector('{bands}');
          const box = plot.getBoundingClientRect();
          const {{ margin, xaxis2 }} = plot.figure.layout;
          const width = box.width - margin.l - margin.r;
          return [box.left + margin.l + width * (xaxis2.domain[0] + xaxis2.domain[1]) / 2,
                  box.top + margin.t + 40];
        }}"""
    )
    page.mouse.move(x, y)
    dashboard.wait_js("() => document.querySelector('#tooltip')?.hidden === false")
    seen = dashboard.wait_js(
        """() => {
          const text = document.querySelector('#tooltip').innerText.split('\\n');
          const step = Number(text[0].replace(/^step /, ''));
          const state = window.covshift.state;
          const layer = window.covshift.view.lessonLayer ?? state.depth - 1;
          const column = window.columnsOf(state).find((c) => c.step === step);
          const median = column?.variants.bn.layers[layer].taps.act_input.percentiles[2];
          const loss = document.querySelector('#overview .card.loss');
          const [place] = window.cursorPlaces(loss.querySelector('.plot').figure.layout,
                                              loss.querySelector('.plot').clientWidth, step, ['x']);
          const line = loss.querySelector('.cursor-line');
          const drawn = [...document.querySelectorAll('#lesson .lesson-bands .cursor-line')]
            .filter((l) => !l.hidden).length;
          if (!line || line.hidden || !place) return null;
          return { text, step, median, left: parseFloat(line.style.left), expected: place.left,
                   drawn };
        }"""
    )
    # The tooltip's numbers are the frame's: BN's median at the hovered step, three digits.
    label, value = seen["text"][1].split(": ")
    assert label == "BN · 50%"
    assert float(value) == float(format(seen["median"], ".3g"))
    assert seen["text"][2].startswith("15–85%: ") and seen["text"][3].startswith("1–99%: ")
    # Every chart on a step axis shows the same step: the loss chart's line where its
    # layout puts that step, and a line in each of the bands' two panels.
    assert abs(seen["left"] - seen["expected"]) < 1.0
    assert seen["drawn"] == 2
    page.mouse.move(5, 5)
    dashboard.wait_js("() => document.querySelector('#tooltip').hidden")
    # A drag across BN's panel zooms both panels in on the steps it spans, and stays zoomed
    # when the chart redraws (as it does for every frame); a double-click zooms out again.
    before = dashboard.js(f"() => document.querySelector('{bands}').figure.xRange")
    page.mouse.move(x - 60, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=4)
    page.mouse.up()
    zoomed = dashboard.js(f"() => document.querySelector('{bands}').figure.xRange")
    assert before[0] < zoomed[0] < zoomed[1] < before[1]
    assert page.is_visible("#lesson .lesson-bands .chart-unzoom")
    renders = "window.covshift.scheduler.stats.byWidget['lesson-bands'].renders"
    before_redraw = dashboard.js(f"() => {renders}")
    dashboard.js("() => window.covshift.scheduler.urgent()")
    dashboard.wait_js(f"() => {renders} > {before_redraw}")
    assert dashboard.js(f"() => document.querySelector('{bands}').figure.xRange") == zoomed
    page.dblclick("#lesson .lesson-bands canvas")
    dashboard.wait_js(f"() => document.querySelector('{bands}').figure.xRange[1] > {zoomed[1]}")
    assert not page.is_visible("#lesson .lesson-bands .chart-unzoom")
    # The chart saves as a PNG, twice its size on screen.
    width = dashboard.js(f"() => document.querySelector('{bands}').clientWidth")
    with page.expect_download() as download:
        page.click("#lesson .lesson-bands .chart-download")
    path = tmp_path / "bands.png"
    download.value.save_as(path)
    assert download.value.suggested_filename.startswith("covshift-layer")
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (2 * width, 2 * 230)
    assert dashboard.errors == []


def test_a_sweep_starts_from_the_form_and_its_chart_fills(
    dashboard: Page, server: ThreadedServer
) -> None:
    dashboard.wait_frames()
    page = dashboard.page
    # Every progress line the view shows, from its first (the view exists from the start).
    page.evaluate(
        """() => {
          window.seenProgress = [];
          const line = document.querySelector('#sweep .sweep-progress');
          new MutationObserver(() => window.seenProgress.push(line.textContent))
            .observe(line, { childList: true, characterData: true, subtree: true });
        }"""
    )
    page.click("#new-run > summary")
    page.select_option("#setup-preset", "batch-sweep")
    assert "minutes" in page.inner_text("[data-field=sweep_values] .sweep-estimate")  # 221 s
    page.select_option("#setup-dataset", "moons")
    for name, value in (("depth", "2"), ("width", "16"), ("steps", "60"), ("test_every", "30")):
        page.fill(f"#setup-{name}", value)
    page.fill("#setup-sweep_values", "4, 16")
    page.click("#new-run button[type=submit]")
    dashboard.wait_js("() => window.covshift.sweep.runState === 'finished'", timeout=60)
    seen = dashboard.js("() => window.seenProgress")
    assert any(text.startswith("Point 1 of 2: batch size 4") for text in seen), seen
    assert any(text.startswith("Point 2 of 2: batch size 16") for text in seen), seen
    assert page.inner_text("#sweep .sweep-progress").startswith("Finished: 2 points in")
    assert page.is_visible("#sweep") and not page.is_visible("#lesson")
    # The accuracy chart holds one point per batch size for each variant.
    traces = dashboard.js(
        "() => document.querySelector('#sweep .sweep-acc .plot').data.map((t) => t.x)"
    )
    assert len(traces) == 5 and all(x == [4, 16] for x in traces)
    assert page.is_visible("#sweep .sweep-noise .plot")
    # Log-axis tick labels as drawn: the swept values, none overlapping the next.
    for chart in ("sweep-acc", "sweep-noise"):
        boxes = dashboard.js(
            f"""() => [...document.querySelectorAll('#sweep .{chart} .xtick text')].map((t) => {{
                  const r = t.getBoundingClientRect();
                  return [t.textContent, r.left, r.right];
                }})"""
        )
        assert [text for text, *_ in boxes] == ["4", "16"]
        for k in range(1, len(boxes)):
            assert boxes[k - 1][2] < boxes[k][1], boxes
    run_id = dashboard.run_id()
    href = page.get_attribute("#sweep .sweep-actions a", "href")
    assert href == f"/api/runs/{run_id}/report"
    assert server.http.get(href).status_code == 200
    assert dashboard.errors == []


def test_the_bn_doctor_card_shows_the_demo_runs_findings(
    chromium: Any, server: ThreadedServer
) -> None:
    # The demo run (live or stopped by a test above), whatever run a test selected before.
    (demo,) = [run for run in server.runs() if run["demo"]]
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = Page(context.new_page(), server)
    try:
        page.page.goto(f"{server.url}/#run={demo['id']}")
        page.page.wait_for_selector("#measuring #doctor-card")
        page.page.locator("#doctor-card").scroll_into_view_if_needed()
        status = page.wait_js(
            """() => {
              const status = document.querySelector('#doctor-card .doctor-body')?.dataset.status;
              return status === 'clear' || status === 'found' ? status : null;
            }""",
            timeout=20,
        )
        card = page.page.inner_text("#doctor-card")
        assert card.startswith("BN doctor")
        if status == "clear":
            assert "no problems found" in card
            assert (
                page.js("() => document.querySelectorAll('.doctor-badge:not([hidden])').length")
                == 0
            )
        else:
            # Each finding shows its severity, title, evidence and fix; each hidden layer the
            # card lists has its badge in the layer's header, and only those.
            findings = page.js(
                """() => [...document.querySelectorAll('#doctor-card .doctor-finding')].map((f) =>
                     [f.querySelector('.doctor-severity').textContent,
                      f.querySelector('.doctor-title b').textContent,
                      f.querySelector('.doctor-evidence').textContent,
                      f.querySelector('.doctor-fix').textContent])"""
            )
            assert findings and all(all(part.strip() for part in f) for f in findings)
            listed = set(re.findall(r"Hidden layer (\d+)", card))
            badged = page.js(
                """() => [...document.querySelectorAll('.layer')]
                     .filter((l) => !l.querySelector('.doctor-badge').hidden)
                     .map((l) => l.id.replace('layer-', ''))"""
            )
            assert set(badged) == listed
        assert page.errors == []
    finally:
        context.close()


def test_restart_with_these_settings_starts_a_run_with_the_settings_of_now(
    chromium: Any, server: ThreadedServer
) -> None:
    first = server.create(SMALL)  # a live run of its own (a test above stops the demo)
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = Page(context.new_page(), server)
    second = None
    try:
        page.page.goto(f"{server.url}/#run={first}")
        page.wait_frames()
        page.enter("#control-batch_size", "8")
        page.page.wait_for_selector("[data-field=batch_size] .msg.ok")
        page.page.click("#restart-button")
        moved = f"() => window.covshift?.runId !== {first!r} && window.covshift.runId"
        second = page.wait_js(moved)
        config = server.run(second)["config"]
        assert config["batch_size"] == 8 and config["dataset"] == SMALL["dataset"]
        assert server.run(first)["state"] == "running"  # the first run goes on
        assert page.errors == []
    finally:
        context.close()
        for run_id in (first, second):
            if run_id is not None:
                server.http.delete(f"/api/runs/{run_id}")


def lesson_entry(lesson_id: str) -> dict[str, Any]:
    (entry,) = [each for each in rules_module.rules().lessons if each["id"] == lesson_id]
    return entry


def test_a_lesson_starts_from_the_first_screen_with_its_config_and_panel(
    chromium: Any, server: ThreadedServer
) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    page = Page(context.new_page(), server)
    run_id = None
    try:
        page.page.goto(demo_url(server))
        page.wait_frames()
        # Six lessons on the first screen, each under its title.
        titles = page.js(
            "() => [...document.querySelectorAll('.lesson-button')].map((b) => b.innerText)"
        )
        assert [" ".join(title.split()[1:]) for title in titles] == [
            entry["text"]["en"]["title"] for entry in rules_module.rules().lessons
        ]
        button = page.page.locator(".lesson-button[data-lesson=internal-covariate-shift]")
        box = button.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 720
        button.click()
        run_id = page.wait_js(
            "() => window.covshift.lesson === 'internal-covariate-shift' && window.covshift.runId"
        )
        # The run is the lesson's config, and the page shows it with the lesson's panel.
        config = server.run(run_id)["config"]
        values = lesson_entry("internal-covariate-shift")["values"]
        assert {key: config[key] for key in values} == values
        assert page.page.inner_text("#lesson-panel .lesson-panel-title") == (
            "Lesson 2: Internal covariate shift"
        )
        claim = page.page.inner_text("#lesson-panel .lesson-claim")
        assert claim.startswith(("checking… (judged at step 1,500)", "Over steps 0–1500")), claim
        assert page.js("() => window.covshift.view.tap") == "act_input"
        # The panel's claims stand in for the stock one; the lesson chart stays on screen.
        page.wait_js(
            """() => {
              const plots = [...document.querySelectorAll('#lesson .plot')];
              return window.covshift.state.frames > 2 && plots.length === 2
                && plots.every((p) => p.figure?.points > 2 || p.data?.some((t) => t.x.length > 2));
            }""",
            timeout=30,
        )
        assert not page.page.is_visible("#lesson .claim")
        bottoms = page.js(
            "() => [...document.querySelectorAll('#lesson .card')]"
            ".map((card) => card.getBoundingClientRect().bottom)"
        )
        assert len(bottoms) == 2 and max(bottoms) <= 720, bottoms
        # Closed, the panel goes and the run goes on.
        page.page.click("#lesson-panel .lesson-close")
        assert not page.page.is_visible("#lesson-panel")
        page.page.wait_for_selector("#lesson .claim", state="visible")
        assert server.run(run_id)["state"] in ("created", "running")
        assert page.errors == []
    finally:
        if run_id:
            server.http.delete(f"/api/runs/{run_id}")
        context.close()


def test_a_scheduled_lesson_lists_its_changes_and_marks_the_first(
    dashboard: Page, server: ThreadedServer
) -> None:
    dashboard.wait_frames()
    page = dashboard.page
    run_id = None
    try:
        page.click(".lesson-button[data-lesson=small-batches]")
        run_id = dashboard.wait_js(
            "() => window.covshift.lesson === 'small-batches' && window.covshift.runId"
        )
        schedule = dashboard.js(
            "() => [...document.querySelectorAll('#lesson-panel .lesson-schedule li')]"
            ".map((li) => li.textContent)"
        )
        assert schedule == ["at step 200: batch size 1 → 4", "at step 1,500: batch size 4 → 256"]
        # The lesson's tap in the "Distribution of" select and the distribution charts.
        dashboard.wait_js("() => document.querySelector('#view-tap').value === 'norm_xhat'")
        assert dashboard.js("() => window.covshift.view.tap") == "norm_xhat"
        # BN is skipped at batch size 1 from step 0: the first claim is judged at once.
        dashboard.wait_js(
            """() => document.querySelector('#lesson-panel .lesson-claim')?.dataset.status
                 === 'holds'""",
            timeout=30,
        )
        first = page.inner_text("#lesson-panel .lesson-claim")
        assert first.startswith("At batch size 1 BN was skipped from step 0: one example")
        # Step 200: the scheduled change happens once, is marked on the lesson chart and ticked.
        dashboard.wait_js(
            """() => {
              const plot = document.querySelector('#lesson .lesson-bands .plot');
              return (plot?.figure?.lines ?? []).includes(200);
            }""",
            timeout=40,
        )
        events = dashboard.js(
            "() => window.covshift.state.events.filter((e) => e.kind === 'batch_size')"
        )
        assert [(e["step"], e["value"], e["scheduled"]) for e in events][:1] == [(200, 4, True)]
        dashboard.wait_js(
            "() => document.querySelector('#lesson-panel .lesson-schedule li').classList"
            ".contains('done')"
        )
        # A "watch" link takes the reader to the chart it names.
        page.click("#lesson-panel .lesson-link:has-text('hidden layer 3')")
        dashboard.wait_js(
            """() => {
              const top = document.querySelector('#layer-3 .card.dist').getBoundingClientRect().top;
              return top > 0 && top < 120;
            }"""
        )
        assert dashboard.errors == []
    finally:
        if run_id:
            server.http.delete(f"/api/runs/{run_id}")


def test_no_tick_labels_overlap_on_the_first_screen_at_1280(
    chromium: Any, server: ThreadedServer
) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    page = Page(context.new_page(), server)
    page.page.goto(demo_url(server))
    page.wait_frames(30)
    page.wait_js(
        "() => [...document.querySelectorAll('#lesson .canvas-chart, #overview .canvas-chart')]"
        ".filter((p) => p.figure?.points > 3).length === 4"
    )
    # Every pair of neighbouring tick labels on one axis: the right one starts after the left
    # one ends. The canvas charts say where they drew each label, measured with the page's
    # own font; Plotly's axes (none on this screen now, any elsewhere) are measured as drawn.
    overlaps = page.js(
        """() => {
          const found = [];
          // Those drawn (a chart out of view waits until it is scrolled to).
          const drawn = [...document.querySelectorAll('.canvas-chart')].filter((p) => p.figure);
          for (const plot of drawn) {
            const { x, y } = plot.figure.ticks;
            const card = plot.closest('.card').className;
            for (const labels of x) {
              for (let i = 1; i < labels.length; i += 1) {
                if (labels[i].left < labels[i - 1].right) found.push([card, labels]);
              }
            }
            for (let i = 1; i < y.length; i += 1) {
              if (Math.abs(y[i].y - y[i - 1].y) < 12) found.push([card, y]);
            }
            if (x.flat().length < 2 || y.length < 2) found.push(['too few ticks', card]);
          }
          for (const axis of document.querySelectorAll('.xaxislayer-above, .yaxislayer-above')) {
            const boxes = [...axis.querySelectorAll('text')].map((t) => t.getBoundingClientRect())
              .filter((b) => b.width > 0);
            const horizontal = axis.classList.contains('xaxislayer-above');
            boxes.sort((a, b) => (horizontal ? a.left - b.left : a.top - b.top));
            for (let i = 1; i < boxes.length; i += 1) {
              const gap = horizontal ? boxes[i].left - boxes[i - 1].right
                                     : boxes[i].top - boxes[i - 1].bottom;
              if (gap < 0) {
                const names = [...axis.querySelectorAll('text')].map((t) => t.textContent);
                found.push([gap, axis.closest('.card')?.className ?? '', names.join(' ')]);
              }
            }
          }
          return found;
        }"""
    )
    assert overlaps == []
    assert page.errors == []
    context.close()


def test_reports_draw_every_figure_with_the_pages_plotly(
    chromium: Any, server: ThreadedServer, tmp_path: Path, digits: Any
) -> None:
    # A report inlines the page's plotly.js (its basic bundle) and opens from disk, under its
    # own CSP: every figure, the sweep's error bars included, must draw without an error.
    from covshift.config import RunConfig
    from covshift.reports.sweep import render_sweep_report
    from covshift.train.sweep import run_sweep

    (demo,) = [run for run in server.runs() if run["demo"]]
    sweep = run_sweep(
        RunConfig(variants=("plain", "bn"), depth=1, width=8, steps=6, ics_every=0),
        "batch_size", (2, 8), dataset=digits, seeds=(0, 1),
    )  # fmt: skip
    reports = {
        "run": server.get_text(f"/api/runs/{demo['id']}/report"),
        "sweep": render_sweep_report(sweep),
    }
    for name, text in reports.items():
        path = tmp_path / f"{name}.html"
        path.write_text(text, encoding="utf-8")
        figures = len(re.findall(r'<div id="figure-\d+" class="figure">', text))
        assert figures >= 2, name
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = Page(context.new_page(), server)
            page.page.goto(path.as_uri())
            drawn = page.wait_js(
                f"""() => {{
                  const plots = [...document.querySelectorAll('.figure')];
                  const ok = plots.length === {figures}
                    && plots.every((p) => p.querySelector('.scatterlayer .trace path'));
                  return ok && plots.length;
                }}"""
            )
            assert drawn == figures, name
            if name == "sweep":  # the spread over seeds, as error bars
                assert page.js("() => document.querySelectorAll('.errorbar path').length") > 0
            assert page.errors == [], (name, page.errors)
        finally:
            context.close()
