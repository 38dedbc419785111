/** The status bar (connection, run state, step, epoch, rates) and the banners that explain a run's condition. */

import { formatNumber } from "./bounds.js";
import { t } from "./i18n.js";
import { variantName } from "./charts/plot.js";
import { setProperty, setText } from "./dom.js";

/**
 * Rates over a sliding window of (arrival time in ms, step) samples: frames per second,
 * and steps per second from the steps the frames carry.
 */
export class RateMeter {
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.samples = [];
  }

  add(time, step = null) {
    this.samples.push([time, step]);
    this.trim(time);
  }

  trim(now) {
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop][0] < now - this.windowMs) drop += 1;
    if (drop) this.samples.splice(0, drop);
  }

  /** Samples per second over the window. */
  rate(now) {
    this.trim(now);
    return this.samples.length / (this.windowMs / 1000);
  }

  /** Steps per second over the window (null with fewer than two samples half a second apart). */
  stepRate(now) {
    this.trim(now);
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || first[1] === null || last[1] === null || last[0] - first[0] < 500) return null;
    return ((last[1] - first[1]) * 1000) / (last[0] - first[0]);
  }

  reset() {
    this.samples = [];
  }
}

/** Steps per second from two readings of the server's step counter ({step, time}). */
export function stepsPerSecond(previous, current) {
  if (!previous || !current || current.time <= previous.time || current.step < previous.step) return null;
  return ((current.step - previous.step) * 1000) / (current.time - previous.time);
}

/** The server's English reason for a skipped variant, in the page's language when it is the known one. */
function reasonText(reason) {
  return typeof reason === "string" && reason.startsWith("BatchNorm cannot train on batch size 1") ? t("reason.batchOne") : reason;
}

/** Banners for the run's condition, most important first: [{kind, text}]. */
export function bannersFor(state, live) {
  const banners = [];
  const connection = live.connection?.state;
  if (live.noRuns) banners.push({ kind: "info", text: t("banner.noRuns") });
  if (connection === "waiting" && live.everOpen) banners.push({ kind: "warn", text: t("banner.offline") });
  if (state.runState === "failed") banners.push({ kind: "error", text: t("banner.failed", { message: state.runMessage ?? live.runInfo?.error ?? "" }) });
  // Listed so by the server at its start (no event says it): its files could not all be read.
  const damaged = live.runInfo?.state === "damaged";
  if (damaged) banners.push({ kind: "error", text: t("banner.damaged", { message: live.runInfo.error ?? "" }) });
  else if (state.runState === "finished" || state.runState === "stopped") {
    banners.push({ kind: "info", text: t("banner.ended", { state: t(`runstate.${state.runState}`) }) });
  }
  if (state.skipped) {
    banners.push({
      kind: "warn",
      text: t("banner.skipped", { variants: state.skipped.variants.map(variantName).join(", "), reason: reasonText(state.skipped.reason) }),
    });
  }
  for (const [variant, info] of Object.entries(state.diverged)) {
    banners.push({ kind: "error", text: t("banner.diverged", { variant: variantName(variant), step: info.step ?? "?", reason: info.reason ?? "NaN" }) });
  }
  if (connection === "open" && state.hello === null && !live.noRuns && !damaged) banners.push({ kind: "info", text: t("banner.waitingHello") });
  return banners;
}

export function createStatusBar({ connection, runState, step, epoch, sps, fps, banners }, live) {
  let shownBanners = "";
  return {
    name: "status",
    // Twice a second (as the controls, and as a chart at most waits): every update is a
    // style, layout and paint pass of the whole page, and at 150 ms these two kept a page
    // slowed 4x some 5% of its time busier.
    intervalMs: 450,
    update(state) {
      const conn = live.connection?.state ?? "idle";
      setProperty(connection.dataset, "state", conn);
      setText(connection.querySelector(".conn-text"), t(`conn.${conn}`, { seconds: ((live.connection?.delayMs ?? 0) / 1000).toFixed(1) }));
      const stateName = state.runState ?? live.runInfo?.state ?? null;
      setText(runState, stateName ? t(`runstate.${stateName}`) : "—");
      setProperty(runState.dataset, "state", stateName ?? "");
      // The newest of: the frames, the run info a control's answer carried, the poll.
      const steps = Math.max(state.step ?? -1, state.run?.step ?? -1, live.runInfo?.step ?? -1);
      setText(step, steps >= 0 ? steps.toLocaleString("en-US") : "—");
      const epochs = state.epoch ?? live.runInfo?.epoch ?? null;
      setText(epoch, epochs === null ? "—" : epochs.toFixed(epochs < 10 ? 2 : 1));
      // From the frames while they stream; from the server's step counter otherwise (paused).
      const perSecond = live.frames?.stepRate(performance.now()) ?? live.stepsPerSecond;
      const rate = perSecond === null || perSecond === undefined ? "—" : formatNumber(Math.round(perSecond));
      // A paced run (the demo) says so: its rate is a choice, not the machine's speed.
      const pace = state.hello?.config?.steps_per_s ?? null;
      setText(sps, pace === null ? rate : `${rate} ${t("status.slowMotion")}`);
      setProperty(sps, "title", pace === null ? "" : t("status.slowMotionWhy", { pace: formatNumber(pace) }));
      setText(fps, live.frames ? live.frames.rate(performance.now()).toFixed(1) : "—");
      const list = bannersFor(state, live);
      const key = JSON.stringify(list);
      if (key !== shownBanners) {
        shownBanners = key;
        banners.replaceChildren(
          ...list.map(({ kind, text }) => {
            const node = document.createElement("div");
            node.className = `banner ${kind}`;
            node.setAttribute("role", kind === "error" ? "alert" : "status");
            node.textContent = text;
            return node;
          }),
        );
      }
    },
  };
}
