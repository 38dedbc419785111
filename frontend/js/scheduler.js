/** Render budget: charts redraw in turns (tasks queued from animation frames), only while in view. */

// Messages only mark charts stale. Redraws go round-robin, one or two per turn, at a pace
// that keeps the main thread mostly free for input. A turn is a task of its own, queued from
// an animation frame (so a hidden tab draws nothing): the charts' script runs in it, and the
// browser's style, layout and paint of what it changed come in the next frame, a task apart,
// so a person's input can be handled between the two and neither lengthens the other. The
// pace follows what each chart's redraw costs on this machine, measured every time, the
// browser's part included (on a slow machine it is a fifth to a third of the cost): on a
// fast one every visible chart redraws twice a second; where that would take more than
// `maxBusy` of the thread (a slow laptop), the interval widens, down to once a second. Right
// after a person types, clicks or scrolls, redraws hold off for a moment (they are skipped,
// not queued), so the page answers first.

/** The default afterPaint: time from the next animation frame's callback to a task queued in
 * it, which runs after that frame's style, layout and paint. */
function paintOfNextFrame(fn) {
  requestAnimationFrame(() => {
    const began = performance.now();
    setTimeout(() => fn(performance.now() - began), 0);
  });
}

/** console.error each distinct message once: a chart that fails fails on every redraw. */
function logOnce() {
  const seen = new Set();
  return (error) => {
    const key = String(error?.message ?? error);
    if (seen.has(key)) return;
    seen.add(key);
    console.error(error);
  };
}

export const DEFAULTS = {
  frameBudgetMs: 12, // start another chart in a turn only if its usual cost still fits this
  targetBusy: 0.2, // share of the main thread that chart redraws aim at, layout and paint included
  maxBusy: 0.3, // ... and never exceed while the interval can still widen
  minIntervalMs: 300, // no chart redraws more than ~3 times a second
  preferredIntervalMs: 450, // a stale visible chart waits at most this long (≥ 2/s) while redraws take ≤ maxBusy
  maxIntervalMs: 900, // ... and never longer than this (≥ 1/s with a frame to spare), however slow the machine
  quietAfterInputMs: 250, // no redraw starts this soon after a key, click or scroll
  costSmoothing: 0.3, // weight of the newest measurement in a chart's cost estimate
};

/**
 * createScheduler({getState, ...}) → scheduler. A widget is any object with
 * `update(state)`; `element` (for IntersectionObserver) is optional: without one the
 * widget counts as always visible. `intervalMs` overrides the shared redraw interval.
 */
export function createScheduler({
  getState,
  now = () => performance.now(),
  // Runs a turn: a task queued from the next animation frame.
  requestFrame = (fn) => requestAnimationFrame(() => setTimeout(fn, 0)),
  setTimer = (fn, ms) => setTimeout(fn, ms),
  clearTimer = (id) => clearTimeout(id),
  observerFactory = typeof IntersectionObserver === "function"
    ? (callback) => new IntersectionObserver(callback, { rootMargin: "120px 0px" })
    : null,
  onError = logOnce(),
  // Calls fn(ms) with the browser's part of a turn's redraws: the next frame's rendering,
  // from its animation-frame callback to a task queued there, which runs once it has painted.
  // null: redraws are measured without it (no page: the tests' fake clock).
  afterPaint = globalThis.document ? paintOfNextFrame : null,
  options = {},
}) {
  const config = { ...DEFAULTS, ...options };
  const entries = []; // {widget, visible, dirty, lastRender, cost, paint, renders}
  const byElement = new Map();
  let cursor = 0;
  let frameRequested = false;
  let timer = null;
  let quietUntil = -Infinity;
  const stats = { frames: 0, renders: 0, renderMs: 0, longestMs: 0, longestFrameMs: 0, held: 0, byWidget: {} };

  const observer = observerFactory
    ? observerFactory((records) => {
        let woke = false;
        for (const record of records) {
          const entry = byElement.get(record.target);
          if (!entry) continue;
          entry.visible = record.isIntersecting;
          woke = woke || (entry.visible && entry.dirty);
        }
        if (woke) schedule();
      })
    : null;

  function add(widget) {
    const entry = { widget, visible: !(widget.element && observer), dirty: true, lastRender: -Infinity, cost: 8, paint: 0, renders: 0 };
    entries.push(entry);
    if (widget.element && observer) {
      byElement.set(widget.element, entry);
      observer.observe(widget.element);
    }
    schedule();
    return widget;
  }

  function remove(widget) {
    const index = entries.findIndex((entry) => entry.widget === widget);
    if (index < 0) return;
    const [entry] = entries.splice(index, 1);
    if (widget.element && observer) {
      observer.unobserve(widget.element);
      byElement.delete(widget.element);
    }
    if (cursor > index) cursor -= 1;
    return entry;
  }

  function clear() {
    for (const entry of [...entries]) remove(entry.widget);
    cursor = 0;
  }

  /** Mark every widget (or one) stale; visible ones redraw within their interval. */
  function invalidate(widget) {
    for (const entry of entries) if (!widget || entry.widget === widget) entry.dirty = true;
    schedule();
  }

  /** Redraw as soon as possible, ignoring the interval (a user changed what a chart shows). */
  function urgent(widget) {
    for (const entry of entries) {
      if (!widget || entry.widget === widget) {
        entry.dirty = true;
        entry.lastRender = -Infinity;
      }
    }
    schedule();
  }

  function interval() {
    let visibleCost = 0;
    for (const entry of entries) if (entry.visible) visibleCost += entry.cost + entry.paint;
    const preferred = Math.min(config.preferredIntervalMs, visibleCost / config.targetBusy);
    const needed = visibleCost / config.maxBusy; // what keeps redraws within maxBusy
    return Math.min(config.maxIntervalMs, Math.max(config.minIntervalMs, preferred, needed));
  }

  /** A person typed, clicked or scrolled: the page answers before the next redraw. */
  function input() {
    quietUntil = now() + config.quietAfterInputMs;
  }

  function schedule() {
    if (timer !== null) {
      clearTimer(timer);
      timer = null;
    }
    if (frameRequested) return;
    frameRequested = true;
    requestFrame(frame);
  }

  function frame() {
    frameRequested = false;
    stats.frames += 1;
    const start = now();
    if (start < quietUntil) {
      stats.held += 1;
      timer = setTimer(() => {
        timer = null;
        schedule();
      }, quietUntil - start);
      return;
    }
    const gap = interval();
    let nextDue = Infinity;
    let rendered = 0;
    const drawn = [];
    const n = entries.length;
    const first = cursor;
    for (let k = 0; k < n; k += 1) {
      const entry = entries[(first + k) % n];
      if (!entry.dirty || !entry.visible) continue;
      // A widget may ask for its own pace (the status bar and the controls: cheap, twice a second).
      const due = entry.lastRender + (entry.widget.intervalMs ?? gap);
      const t = now();
      if (t < due) {
        nextDue = Math.min(nextDue, due);
        continue;
      }
      // One chart always draws; another only if its usual cost still fits this frame's budget.
      if (rendered > 0 && t - start + entry.cost + entry.paint > config.frameBudgetMs) {
        nextDue = t; // the rest waits for the next frame
        continue;
      }
      drawn.push([entry, renderOne(entry)]);
      rendered += 1;
      // Round-robin: the next frame starts after the last chart drawn.
      cursor = (first + k + 1) % n;
    }
    stats.longestFrameMs = Math.max(stats.longestFrameMs, now() - start);
    // Before the next turn is asked for, so the measurement's frame callback runs first and
    // its task ends before the next turn's charts start.
    if (drawn.length && afterPaint) afterPaint((browserMs) => measurePaint(drawn, browserMs));
    if (nextDue < Infinity) {
      const wait = nextDue - now();
      if (wait <= 16) schedule();
      else {
        timer = setTimer(() => {
          timer = null;
          schedule();
        }, wait);
      }
    }
  }

  /** The browser's part of a frame, shared among the charts drawn in it by their own cost. */
  function measurePaint(drawn, browserMs) {
    const total = drawn.reduce((sum, [, ms]) => sum + ms, 0);
    for (const [entry, ms] of drawn) {
      const share = total > 0 ? (browserMs * ms) / total : browserMs / drawn.length;
      entry.paint += config.costSmoothing * (Math.max(0, share) - entry.paint);
    }
  }

  function renderOne(entry) {
    const t0 = now();
    entry.dirty = false;
    try {
      entry.widget.update(getState());
    } catch (error) {
      onError(error);
    }
    const ms = now() - t0;
    entry.lastRender = t0;
    entry.cost = entry.renders === 0 ? Math.min(ms, 30) : entry.cost + config.costSmoothing * (ms - entry.cost);
    entry.renders += 1;
    stats.renders += 1;
    stats.renderMs += ms;
    stats.longestMs = Math.max(stats.longestMs, ms);
    const name = entry.widget.name ?? "widget";
    const own = (stats.byWidget[name] ??= { renders: 0, ms: 0, maxMs: 0 });
    own.renders += 1;
    own.ms += ms;
    own.maxMs = Math.max(own.maxMs, ms);
    return ms;
  }

  function dispose() {
    clear();
    if (timer !== null) clearTimer(timer);
    timer = null;
    observer?.disconnect();
  }

  return { add, remove, clear, invalidate, urgent, input, dispose, stats, entries, get interval() { return interval(); }, frame };
}
