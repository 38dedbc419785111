/** Wires the page together: runs, the websocket stream, state, controls, charts and language. */

import { changeRun, createRun, getRun, listRuns, stopRun } from "./api.js";
import { createCursorBus } from "./charts/cursor.js";
import { Connection, runSocketUrl } from "./connection.js";
import { createLiveControls, restartConfig } from "./controls.js";
import { createDashboard } from "./dashboard.js";
import { getLang, onLangChange, setLang, t, translatePage } from "./i18n.js";
import { createLessons } from "./lessons.js";
import { createRunsList, pickRun } from "./runs.js";
import { createScheduler } from "./scheduler.js";
import { loadRules } from "./rules.js";
import { createSetupForm } from "./setup.js";
import { applyMessage, createState } from "./state.js";
import { createStatusBar, RateMeter, stepsPerSecond } from "./status.js";
import { createSweepView } from "./sweep.js";
import { createViewPanel } from "./view.js";

const RUNS_POLL_MS = 2000;
const CONTROL_TIMEOUT_MS = 10_000;

const $ = (id) => document.getElementById(id);

// Bounds, defaults, choices and the variants come from the server: nothing is built before them.
await loadRules();

// What the charts show beyond the stream itself: the person's choices.
const view = { window: "recent", tap: "act_input", channel: 0, bnVariant: null };
// What the page knows besides the message stream: connection, server-side run info, rates.
const live = { connection: { state: "idle" }, runInfo: null, stepsPerSecond: null, frames: new RateMeter(), everOpen: false, noRuns: false };

// Which run is viewed and how the page talks to it. `state` (what the run's messages say)
// changes only through the reducer, applyMessage. (`view` holds the person's display
// choices, `live` the connection and rates, `intake` the benchmarks' counters.)
const session = {
  state: createState(),
  runId: null,
  connection: null,
  runs: [], // the server's run list, as last polled
  lastReading: null, // {step, time} of the viewed run at the last poll, for steps/s
  nextControlId: 1,
  liveAfterStep: Number.POSITIVE_INFINITY, // frames after this step arrived live (not history)
  pending: new Map(), // control id -> resolve
};

const cursor = createCursorBus();
const scheduler = createScheduler({ getState: () => session.state });
// The person comes first: a redraw does not start right after a key, a click or a scroll.
for (const type of ["keydown", "pointerdown", "wheel", "input"]) {
  document.addEventListener(type, () => scheduler.input(), { capture: true, passive: true });
}
const dashboard = createDashboard({
  intro: document.querySelector(".intro"),
  lessonRoot: $("lesson"),
  overview: $("overview"),
  layersRoot: $("layers"),
  measuringRoot: $("measuring-charts"),
  scheduler,
  view,
  cursor,
  runKey: () => session.runId ?? "none",
});
const statusBar = scheduler.add(
  createStatusBar(
    { connection: $("conn"), runState: $("st-state"), step: $("st-step"), epoch: $("st-epoch"), sps: $("st-sps"), fps: $("st-fps"), banners: $("banners") },
    live,
  ),
);
const controls = createLiveControls($("live-controls"), { send: sendControl, stop: stopViewedRun, restart: restartViewedRun });
scheduler.add({ name: "controls", intervalMs: 450, update: (s) => controls.update(s) }); // as the status bar
const runsList = createRunsList($("runs"), { onSelect: (id) => selectRun(id) });
const setup = createSetupForm($("new-run"), {
  getCurrentConfig: () => session.state.hello?.config ?? null,
  onCreated: (run) => {
    $("new-run").open = false;
    refreshRuns().then(() => selectRun(run.id));
  },
});

// A sweep's messages go to its own view, which replaces the dashboard while it is shown.
const sweepView = createSweepView(document.querySelector("main"), { getRunId: () => session.runId, stop: stopViewedRun });

// ---- the stream ----

// Time spent taking messages in (parse + apply), for benchmarks.
const intake = { messages: 0, ms: 0, longestMs: 0 };

function onText(text) {
  const started = performance.now();
  take(text);
  const ms = performance.now() - started;
  intake.messages += 1;
  intake.ms += ms;
  if (ms > intake.longestMs) intake.longestMs = ms;
}

function take(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    return; // not JSON: nothing a reader could use
  }
  // A sweep's messages are its view's; its state events also set the run state on top.
  if (sweepView.active && msg?.type === "history" && Array.isArray(msg.messages)) {
    for (const inner of msg.messages) sweepView.take(inner);
  } else if (sweepView.take(msg) && msg.type !== "event") return;
  session.state = applyMessage(session.state, msg);
  const type = msg?.type;
  if (type === "frame") {
    // After a hello the server sends the run's history in one burst; rates count only frames
    // newer than the run's step when the hello came (history has none).
    if (msg.step > session.liveAfterStep) live.frames.add(performance.now(), msg.step);
  } else if (type === "hello") {
    live.frames.reset();
    markLiveFrom(session.runId);
    onHello();
  }
  else if ((type === "ack" || type === "error") && session.pending.has(msg.id)) {
    const resolve = session.pending.get(msg.id);
    session.pending.delete(msg.id);
    resolve(type === "ack" ? { ok: true, run: msg.run } : { ok: false, message: msg.message });
  }
  scheduler.invalidate();
}

function onHello() {
  dashboard.build(session.state);
  viewPanel.fill(session.state);
  session.connection?.syncView(); // fill may have changed the tap or channel asked for
}

/** Frames after the run's current step are live; until the server says which step that is, none are. */
function markLiveFrom(id) {
  session.liveAfterStep = Number.POSITIVE_INFINITY;
  getRun(id).then((answer) => {
    if (id === session.runId && answer.ok) session.liveAfterStep = answer.body.step;
  });
}

function selectRun(id) {
  if (!id || id === session.runId) return;
  session.connection?.close();
  for (const resolve of session.pending.values()) resolve({ ok: false, message: t("controls.noRun") });
  session.pending.clear();
  session.runId = id;
  lessons.showRun(id); // before the hello: the charts are built for the lesson's layer and tap
  history.replaceState(null, "", `#run=${encodeURIComponent(id)}`);
  session.state = createState();
  sweepView.hide();
  live.frames.reset();
  live.runInfo = session.runs.find((run) => run.id === id) ?? null;
  session.lastReading = null;
  live.stepsPerSecond = null;
  // The server streams frames projected onto the view; each (re)connect asks for the view as it is then.
  session.connection = new Connection({
    url: (projection) => runSocketUrl(location, id, projection),
    view: () => view,
    onMessage: onText,
    onStatus: onConnectionStatus,
  }).open();
  runsList.render(session.runs, session.runId);
  scheduler.urgent();
}

function onConnectionStatus(status) {
  live.connection = status;
  if (status.state === "open") live.everOpen = true;
  if (status.state === "unknown-run") {
    // The server no longer has this run (e.g. a demo run from before a restart): show another.
    const gone = session.runId;
    refreshRuns().then(() => {
      const next = pickRun(session.runs.filter((run) => run.id !== gone));
      if (next) selectRun(next);
    });
  }
  scheduler.invalidate(statusBar);
}

function wantedRun() {
  const match = /run=([^&]+)/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

// ---- runs (polled: the list, server-side step counter and state) ----

async function refreshRuns() {
  const answer = await listRuns();
  if (!answer.ok || !Array.isArray(answer.body)) return;
  session.runs = answer.body;
  live.noRuns = session.runs.length === 0;
  live.runInfo = session.runs.find((run) => run.id === session.runId) ?? null;
  if (live.runInfo) {
    const reading = { step: live.runInfo.step, time: performance.now() };
    const rate = stepsPerSecond(session.lastReading, reading);
    if (rate !== null) live.stepsPerSecond = rate;
    session.lastReading = reading;
    session.state = applyMessage(session.state, { type: "runinfo", run: live.runInfo });
  }
  runsList.render(session.runs, session.runId);
  if (session.runId === null) {
    const first = pickRun(session.runs, wantedRun());
    if (first) selectRun(first);
  }
  scheduler.invalidate(statusBar);
}

async function pollRuns() {
  try {
    await refreshRuns();
  } finally {
    setTimeout(pollRuns, RUNS_POLL_MS);
  }
}

// ---- controls ----

/** Send live changes over the websocket (answered by ack or error), or by PATCH when it is down. */
function sendControl(changes) {
  if (!session.runId) return Promise.resolve({ ok: false, message: t("controls.noRun") });
  const id = session.nextControlId++;
  if (session.connection?.send({ type: "control", id, ...changes })) {
    return new Promise((resolve) => {
      session.pending.set(id, resolve);
      setTimeout(() => {
        if (session.pending.delete(id)) resolve({ ok: false, message: t("controls.noAnswer") });
      }, CONTROL_TIMEOUT_MS);
    });
  }
  if ("step" in changes) return Promise.resolve({ ok: false, message: t("controls.needsLive") });
  return changeRun(session.runId, changes).then((answer) => {
    if (answer.ok) {
      session.state = applyMessage(session.state, { type: "ack", id, run: answer.body });
      scheduler.invalidate();
      return { ok: true, run: answer.body };
    }
    return { ok: false, message: answer.status ? String(answer.body?.detail ?? answer.status) : t("err.network") };
  });
}

async function stopViewedRun() {
  if (!session.runId) return { ok: false, message: t("controls.noRun") };
  const answer = await stopRun(session.runId);
  await refreshRuns();
  return answer.ok ? { ok: true } : { ok: false, message: String(answer.body?.detail ?? t("err.network")) };
}

/** Start a new run with the viewed run's config and its settings as they are now. */
async function restartViewedRun() {
  const config = session.state.hello?.config;
  if (!config) return { ok: false, message: t("controls.noRun") };
  const answer = await createRun(restartConfig(config, session.state.settings));
  if (!answer.ok) return { ok: false, message: String(answer.body?.detail ?? t("err.network")) };
  await refreshRuns();
  selectRun(answer.body.id);
  return { ok: true };
}

// ---- view choices ----

// A channel typed digit by digit ("1", "12") is asked for once, when the typing pauses.
const CHANNEL_SETTLES_MS = 300;
let channelTimer = null;

const viewPanel = createViewPanel(view, {
  $,
  getState: () => session.state,
  onChange: (kind) => {
    // A new tap or channel: the server sends the history for it; the charts keep what they have until then.
    clearTimeout(channelTimer);
    if (kind === "bn") channelTimer = setTimeout(() => session.connection?.syncView(), CHANNEL_SETTLES_MS);
    else session.connection?.syncView();
    if (kind === "window") {
      scheduler.urgent(); // every chart with a step axis
      return;
    }
    const prefixes = kind === "tap" ? ["dist", "heatmap", "bands", "lesson"] : ["bn"];
    for (const widget of dashboard.widgetsShowing(prefixes)) scheduler.urgent(widget);
  },
});

// ---- lessons: a strip of six on the first screen, and the viewed lesson's panel ----

const lessons = createLessons({
  strip: $("lessons"),
  panel: $("lesson-panel"),
  view,
  getState: () => session.state,
  getRunId: () => session.runId,
  startRun: (run) => refreshRuns().then(() => selectRun(run.id)),
  choose: (choices) => viewPanel.choose(choices),
});
scheduler.add(lessons.widget);

// ---- language ----

function showLang() {
  for (const button of document.querySelectorAll("[data-lang]")) button.setAttribute("aria-pressed", String(button.dataset.lang === getLang()));
  translatePage(document);
}
for (const button of document.querySelectorAll("[data-lang]")) button.addEventListener("click", () => setLang(button.dataset.lang));
onLangChange(() => {
  showLang();
  runsList.render(session.runs, session.runId);
  scheduler.urgent(); // axis titles, legends and stats lines are text too
});

// ---- start ----

showLang();
pollRuns();
// For tests and benchmarks: read-only views of the page's state and render statistics.
window.covshift = {
  get state() {
    return session.state;
  },
  get runId() {
    return session.runId;
  },
  get connection() {
    return live.connection;
  },
  get sweep() {
    return sweepView.state;
  },
  get lesson() {
    return lessons.current?.lesson.id ?? null;
  },
  scheduler,
  intake,
  view,
};
