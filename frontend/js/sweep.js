/** A sweep's view: its messages reduced to points (pure), progress in words, charts and links. */

import { reportUrl } from "./api.js";
import { formatNumber } from "./bounds.js";
import { createSweepCharts } from "./charts/sweepchart.js";
import { el } from "./dom.js";
import { onLangChange, t, translatePage } from "./i18n.js";
import { sweepsOf } from "./rules.js";

// Past this, a sweep is long enough to say so before it starts and while it runs.
export const LONG_SWEEP_S = 120;

/** A fresh sweep state: nothing received yet. */
export function createSweepState() {
  return { hello: null, points: [], result: null, runState: null, message: null, revision: 0 };
}

/** Is this the hello of a sweep (docs/protocol.md, Sweeps) rather than of a run? */
export const isSweepHello = (msg) => msg?.type === "hello" && msg.kind === "sweep";

/** The state after one message (pure: a new object whenever something changed). */
export function applySweepMessage(state, msg) {
  switch (msg?.type) {
    case "hello":
      // A reconnect sends hello and the history again: start over, so no point counts twice.
      return { ...createSweepState(), hello: msg, revision: state.revision + 1 };
    case "point": {
      if (!Number.isInteger(msg.index)) return state;
      const points = [...state.points.filter((p) => p.index !== msg.index), msg].sort((a, b) => a.index - b.index);
      return { ...state, points, revision: state.revision + 1 };
    }
    case "sweep":
      return { ...state, result: msg, revision: state.revision + 1 };
    case "event":
      if (msg.kind !== "state") return state;
      return { ...state, runState: msg.state, message: msg.message ?? null, revision: state.revision + 1 };
    default:
      return state;
  }
}

/** A duration in words: "45 s", "3 min 41 s". */
export function durationText(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  if (whole < 90) return t("sweep.seconds", { n: whole });
  return t("sweep.minutes", { m: Math.floor(whole / 60), s: whole % 60 });
}

/** The swept field in words ("batch size"), or its name when there are none. */
export function fieldText(field) {
  const key = `sweep.field.${field}`;
  const text = t(key);
  return text === key ? field : text;
}

/**
 * Seconds a sweep will take, scaled from the preset's measured whole sweep (rules `sweeps`)
 * to the steps and number of points asked for; null when the preset has no measurement.
 */
export function estimateSeconds(rule, steps, points) {
  const measured = rule?.measured_s;
  const presetSteps = rule?.values?.steps;
  const presetPoints = rule?.sweep_values?.length;
  if (!(measured > 0 && presetSteps > 0 && presetPoints > 0 && steps > 0 && points > 0)) return null;
  return (measured * (steps / presetSteps) * points) / presetPoints;
}

/**
 * The sweep's values as typed ("2, 4, 8"): {ok: true, values} or {ok: false, key, params}
 * with an i18n key. The server checks each against the swept field's bounds again.
 */
export function parseSweepValues(text, maxPoints) {
  const parts = String(text ?? "").split(/[\s,;]+/).filter(Boolean);
  const values = parts.map(Number);
  const increasing = values.every((v, i) => i === 0 || v > values[i - 1]);
  if (!parts.length || parts.length > maxPoints || !values.every((v) => Number.isFinite(v) && v > 0) || !increasing) {
    return { ok: false, key: "err.sweepValues", params: { max: maxPoints } };
  }
  return { ok: true, values };
}

/** Where the sweep stands, in words: what runs now, or how it ended (one line). */
export function progressText(state) {
  const hello = state.hello;
  if (!hello) return t("sweep.loading");
  const total = hello.values.length;
  const done = state.points.length;
  const elapsed = state.points.reduce((sum, p) => sum + (p.seconds ?? 0), 0);
  if (state.runState === "finished") return t("sweep.done", { total, time: durationText(elapsed) });
  if (state.runState === "stopped") return t("sweep.stopped", { done, total });
  if (state.runState === "failed") return t("sweep.failed", { done, total, message: state.message ?? "" });
  if (done >= total) return t("sweep.finishing", { total });
  const now = t("sweep.point", { n: done + 1, total, field: fieldText(hello.field), value: formatNumber(hello.values[done]) });
  if (done === 0) return now;
  // From the points so far: rough, since a point's cost grows with its value (batch size).
  const left = (elapsed / done) * (total - done);
  return `${now} · ${t("sweep.elapsed", { time: durationText(elapsed), left: durationText(left) })}`;
}

/**
 * Mount the sweep view at the top of `container` (hidden until a sweep's hello arrives).
 * take(msg) consumes a sweep's messages (true when it did); hide() gives the page back to
 * the run dashboard; getRunId() names the viewed run, stop() stops it.
 */
export function createSweepView(container, { getRunId, stop }) {
  const root = el("section", "sweep-view", { id: "sweep" });
  root.hidden = true;
  const title = el("h2", "section-title");
  const progress = el("p", "sweep-progress", { role: "status", "aria-live": "polite" });
  const bar = el("progress", "sweep-bar", { max: "1", value: "0" });
  const note = el("p", "sweep-note muted small");
  const report = el("a", "", { i18n: "sweep.report", download: "" });
  const stopButton = el("button", "", { type: "button", i18n: "sweep.stop" });
  const actions = el("p", "sweep-actions");
  actions.append(report, stopButton);
  const charts = createSweepCharts(el("div", "overview sweep-charts"));
  root.append(title, progress, bar, note, actions, charts.root);
  container.prepend(root);
  let state = createSweepState();
  let active = false;

  stopButton.addEventListener("click", async () => {
    if (!globalThis.confirm(t("sweep.confirmStop"))) return;
    stopButton.disabled = true;
    await stop();
  });

  function render() {
    const hello = state.hello;
    title.textContent = hello ? t("sweep.heading", { field: fieldText(hello.field) }) : t("sweep.loading");
    progress.textContent = progressText(state);
    bar.max = hello ? hello.values.length : 1;
    bar.value = state.points.length;
    const running = !["finished", "stopped", "failed"].includes(state.runState);
    stopButton.hidden = !running;
    stopButton.disabled = false;
    const estimate = hello ? estimateSeconds(sweepsOf()[hello.preset], hello.config?.steps, hello.values.length) : null;
    note.hidden = !(running && estimate !== null && estimate > LONG_SWEEP_S);
    if (!note.hidden) note.textContent = t("sweep.long", { time: durationText(estimate) });
    report.href = reportUrl(getRunId() ?? "");
    translatePage(actions);
    charts.update(state, getRunId());
  }

  onLangChange(() => active && render());

  return {
    get active() {
      return active;
    },
    get state() {
      return state;
    },
    take(msg) {
      if (!active && !isSweepHello(msg)) return false;
      if (!active) {
        active = true;
        root.hidden = false;
        document.body.classList.add("sweep-mode");
      }
      state = applySweepMessage(state, msg);
      render();
      return true;
    },
    hide() {
      if (!active) return;
      active = false;
      state = createSweepState();
      root.hidden = true;
      document.body.classList.remove("sweep-mode");
      charts.reset();
    },
  };
}
