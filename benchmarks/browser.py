"""The page in headless Chromium against `covshift serve`: start-up to the first filled
chart, main-thread load while streaming, chart refresh rates, long tasks, control latency;
a second tab joining the running demo (bytes and time to its charts); then the same
measures with the CPU slowed 4x (Chromium's CPU throttling, through the DevTools protocol),
as on a student's laptop. Figures measured throttled end in `_cpu4x`."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# Long tasks are collected from the first script on, so none is missed.
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push([entry.startTime, entry.duration]);
}).observe({ type: "longtask", buffered: true });
"""

RENDER_COUNTS = """() => window.covshift.scheduler.entries
  .map((e, i) => [i, e.visible, e.renders])"""

TYPE_LEARNING_RATE = """async (value) => {
  const entry = document.querySelector('#control-lr');
  const box = document.querySelector('[data-field=lr]');
  entry.value = String(value);
  const started = performance.now();
  const acked = new Promise((resolve) => {
    const seen = new MutationObserver(() => {
      if (box.querySelector('.msg.ok')) { seen.disconnect(); resolve(); }
    });
    seen.observe(box, { subtree: true, childList: true, attributes: true, characterData: true });
  });
  entry.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter' }));
  await acked;
  return performance.now() - started;
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_health(url: str, deadline: float) -> None:
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# Per frame the page holds, plain's and BN's last-layer drift on the fixed held-out set.
LAST_LAYER_UNIT_DRIFT = """() => {
  const s = window.covshift.state;
  const kept = s.columns.onStride;
  const columns = s.columns.newest === null ? kept : [...kept, s.columns.newest];
  const drift = (c, v) => c.variants?.[v]?.layers?.at(-1)?.drift_fixed?.unit_median ?? null;
  return columns.map((c) => [drift(c, "plain"), drift(c, "bn")]);
}"""


def _unit_drift_ratio(rows: list[list[float | None]]) -> float:
    """How far plain's units moved on the fixed held-out set over BN's, summed over the frames
    where both have a number: the page's claim (frontend/js/series.js unitDrift)."""
    both = [(a, b) for a, b in rows if a is not None and b is not None]
    plain, bn = sum(a for a, _ in both), sum(b for _, b in both)
    return plain / bn if bn > 0 else float("inf")


def _measure_page(page: Any, cdp: Any, window_s: float) -> dict[str, float]:
    busy_before = _task_seconds(cdp)
    renders_before = {i: n for i, visible, n in page.evaluate(RENDER_COUNTS) if visible}
    started = time.monotonic()
    page.wait_for_timeout(window_s * 1000)
    elapsed = time.monotonic() - started
    busy = (_task_seconds(cdp) - busy_before) / elapsed
    renders_after = {i: n for i, visible, n in page.evaluate(RENDER_COUNTS) if visible}
    rates = [
        (renders_after[i] - renders_before[i]) / elapsed
        for i in renders_before
        if i in renders_after
    ]
    return {
        "main_thread_busy": busy,
        "visible_charts": float(len(rates)),
        "slowest_visible_chart_refreshes_per_s": min(rates) if rates else 0.0,
    }


# A chart has drawn: Plotly's traces have points, or the bands' canvas has its steps.
DRAWN = "(plot) => plot.figure?.points > 1 || plot.data?.some((t) => t.x.length > 1)"
# The lesson on the first screen: plain's and BN's bands and distributions drawn.
LESSON_DRAWN = f"""() => [...document.querySelectorAll('#lesson .plot')]
  .filter({DRAWN}).length === 2"""

# The first screen: the lesson drawn, and the loss and accuracy charts where they are in the
# viewport (traces with points), and any heatmap there (columns), wherever the layout puts them.
FIRST_SCREEN_DRAWN = f"""() => {{
  const inView = (el) => {{
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.bottom > 0 && box.top < innerHeight;
  }};
  const drawn = {DRAWN};
  const shown = [...document.querySelectorAll('#lesson .plot, #overview .plot')].filter(inView);
  const canvases = [...document.querySelectorAll('canvas.heatmap-canvas')].filter(inView);
  return ({LESSON_DRAWN})() && shown.every(drawn) && canvases.every((c) => c.width > 5);
}}"""


def _join(browser: Any, url: str) -> dict[str, float]:
    """A new tab joining the running demo: bytes it received over the websocket until its
    first screen was drawn (the hello and the history), and the seconds that took."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    received: list[int] = []

    def listen(ws: Any) -> None:
        ws.on("framereceived", lambda payload: received.append(len(payload)))

    page.on("websocket", listen)
    started = time.monotonic()
    page.goto(url)
    page.wait_for_function(FIRST_SCREEN_DRAWN, timeout=60_000)
    seconds = time.monotonic() - started
    frames = page.evaluate("() => window.covshift.state.frames")
    page.close()
    return {
        "join_frames": float(frames),
        "join_bytes": float(sum(received)),
        "join_to_first_screen_s": seconds,
    }


def _throttled(page: Any, cdp: Any, window_s: float) -> dict[str, float]:
    """The page's measures with the CPU slowed 4x."""
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
    page.wait_for_timeout(2000)  # the page's scheduler sees the slower machine first
    began = page.evaluate("() => performance.now()")
    figures = _measure_page(page, cdp, window_s)
    long_tasks = page.evaluate("() => window.__longTasks")
    late = [d for at, d in long_tasks if at > began]
    figures["tasks_over_50ms"] = float(sum(d > 50 for d in late))
    figures["longest_task_ms"] = max(late, default=0.0)
    acks = sorted(page.evaluate(TYPE_LEARNING_RATE, 0.5 - i * 0.01) for i in range(12))
    figures["control_ack_p95_ms"] = acks[int(0.95 * (len(acks) - 1))]
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
    return {f"{name}_cpu4x": value for name, value in figures.items()}


def _task_seconds(cdp: Any) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))


def run_browser_benchmark(quick: bool) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    window_s = 10.0 if quick else 30.0
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as logdir:
        started = time.monotonic()
        server = subprocess.Popen(
            [sys.executable, "-m", "covshift.cli", "serve", "--port", str(port),
             "--no-browser", "--logdir", logdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_health(url, started + 30)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.add_init_script(LONG_TASKS)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.goto(url)
                page.wait_for_function(
                    "() => window.covshift && window.covshift.state.frames > 0"
                    " && window.covshift.scheduler.stats.renders > 0",
                    timeout=30_000,
                )
                first_chart_s = time.monotonic() - started
                page.wait_for_function(LESSON_DRAWN, timeout=30_000)
                lesson_s = time.monotonic() - started
                first_render_at = page.evaluate("() => performance.now()")
                figures = {"serve_to_first_chart_s": first_chart_s, "serve_to_lesson_s": lesson_s}
                figures |= _measure_page(page, cdp, window_s)
                # The lesson's claim on the frames this tab received: over the demo's first
                # minute (full runs wait for it; --quick measures what it has by then).
                if not quick:
                    page.wait_for_timeout(max(0.0, started + 60 - time.monotonic()) * 1000)
                drift = page.evaluate(LAST_LAYER_UNIT_DRIFT)
                figures["demo_unit_drift_ratio"] = _unit_drift_ratio(drift)
                figures["demo_unit_drift_ratio_over_s"] = time.monotonic() - started
                long_tasks = page.evaluate("() => window.__longTasks")
                late = [d for at, d in long_tasks if at > first_render_at + 1000]
                figures["tasks_over_50ms_after_first_render"] = float(sum(d > 50 for d in late))
                figures["longest_task_ms_after_first_render"] = max(late, default=0.0)
                acks = [page.evaluate(TYPE_LEARNING_RATE, 0.5 - i * 0.01) for i in range(12)]
                acks.sort()
                figures["control_ack_p95_ms"] = acks[int(0.95 * (len(acks) - 1))]
                figures["control_ack_median_ms"] = statistics.median(acks)
                figures |= _throttled(page, cdp, window_s)
                # Joined once the demo's history is full (500 frames, 100 s of the demo).
                page.wait_for_function("() => window.covshift.state.frames >= 500", timeout=120_000)
                figures |= _join(browser, url)
                browser.close()
        finally:
            server.terminate()
            server.wait(15)
    return figures


if __name__ == "__main__":
    print(json.dumps(run_browser_benchmark(quick=True), indent=2))
