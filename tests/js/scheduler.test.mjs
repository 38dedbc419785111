// The render budget: redraw in animation frames, a few charts per frame, visible ones only.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createScheduler } from "../../frontend/js/scheduler.js";

function harness({ costs = {}, options = {}, observer = false } = {}) {
  let clock = 0;
  const frames = [];
  const timers = [];
  let observe = null;
  const scheduler = createScheduler({
    getState: () => "state",
    now: () => clock,
    requestFrame: (fn) => frames.push(fn),
    setTimer: (fn, ms) => timers.push({ fn, at: clock + ms }) ,
    clearTimer: () => {},
    observerFactory: observer
      ? (callback) => {
          observe = callback;
          return { observe() {}, unobserve() {}, disconnect() {} };
        }
      : null,
    options,
  });
  const drawn = [];
  const widget = (name, element = null) => ({
    name,
    element,
    update(state) {
      assert.equal(state, "state");
      drawn.push(name);
      clock += costs[name] ?? 10;
    },
  });
  const runFrame = () => {
    const fn = frames.shift();
    assert.ok(fn, "a frame was requested");
    fn();
  };
  return {
    scheduler,
    widget,
    drawn,
    frames,
    timers,
    runFrame,
    advance: (ms) => (clock += ms),
    visible: (element, yes) => observe([{ target: element, isIntersecting: yes }]),
  };
}

test("charts draw in animation frames, within the frame budget, round-robin", () => {
  const costs = { a: 4, b: 4, c: 4, d: 4, big: 30 };
  const h = harness({ costs, options: { frameBudgetMs: 12, minIntervalMs: 0, maxIntervalMs: 0, targetBusy: 1 } });
  for (const name of ["a", "b", "c", "d"]) h.scheduler.add(h.widget(name));
  assert.equal(h.drawn.length, 0, "nothing draws outside a frame");
  h.runFrame();
  // a takes 4 ms; b's estimate (8 ms before it ever drew) still fits 12 ms, c's does not.
  assert.deepEqual(h.drawn, ["a", "b"]);
  h.runFrame();
  assert.deepEqual(h.drawn, ["a", "b", "c", "d"]);
  assert.equal(h.frames.length, 0, "idle once everything is drawn");
});

test("an expensive chart gets a frame of its own", () => {
  const h = harness({ costs: { a: 2, big: 30 }, options: { frameBudgetMs: 12, minIntervalMs: 0, maxIntervalMs: 0, targetBusy: 1 } });
  h.scheduler.add(h.widget("big"));
  h.scheduler.add(h.widget("a"));
  h.runFrame();
  h.runFrame();
  assert.deepEqual(h.drawn, ["big", "a"]); // big ran over the budget: a waited
  h.scheduler.invalidate();
  h.runFrame();
  // big's measured cost (30 ms, capped) would not fit after a's, so each draws alone.
  assert.equal(h.drawn.length, 3);
  h.runFrame();
  assert.deepEqual(h.drawn.slice(2).sort(), ["a", "big"]);
});

test("a stale chart waits for its interval; new messages only mark it stale", () => {
  const h = harness({ options: { minIntervalMs: 250, maxIntervalMs: 450, targetBusy: 0.3 } });
  h.scheduler.add(h.widget("a"));
  h.runFrame();
  assert.deepEqual(h.drawn, ["a"]);
  for (let i = 0; i < 10; i += 1) h.scheduler.invalidate();
  h.runFrame(); // too soon: sets a timer for when it is due
  assert.deepEqual(h.drawn, ["a"]);
  assert.equal(h.timers.length, 1);
  assert.ok(h.timers[0].at >= 250 && h.timers[0].at <= 450);
  h.advance(450);
  h.timers.shift().fn();
  h.runFrame();
  assert.deepEqual(h.drawn, ["a", "a"], "ten invalidations, one redraw");
});

test("the interval grows with the cost of the visible charts, capped to keep ≥ 2 redraws/s", () => {
  const h = harness({ costs: { a: 25, b: 25, c: 25, d: 25, e: 25, f: 25 }, options: { minIntervalMs: 100, preferredIntervalMs: 450, maxBusy: 1, targetBusy: 0.3 } });
  for (const name of ["a", "b", "c"]) h.scheduler.add(h.widget(name));
  for (let i = 0; i < 3; i += 1) h.runFrame();
  assert.equal(h.scheduler.interval, 250); // 3 × 25 ms / 0.3
  for (const name of ["d", "e", "f"]) h.scheduler.add(h.widget(name));
  for (let i = 0; i < 3; i += 1) h.runFrame();
  assert.equal(h.scheduler.interval, 450); // 6 × 25 / 0.3 = 500, capped
});

test("urgent redraws skip the interval (a user changed what a chart shows)", () => {
  const h = harness();
  const a = h.widget("a");
  h.scheduler.add(a);
  h.runFrame();
  h.scheduler.urgent(a);
  h.runFrame();
  assert.deepEqual(h.drawn, ["a", "a"]);
});

test("charts out of view stay stale until they scroll in", () => {
  const h = harness({ observer: true, options: { minIntervalMs: 0, maxIntervalMs: 0 } });
  const element = {};
  h.scheduler.add(h.widget("hidden", element));
  h.scheduler.add(h.widget("always"));
  h.runFrame();
  assert.deepEqual(h.drawn, ["always"]);
  h.visible(element, true);
  h.runFrame();
  assert.deepEqual(h.drawn, ["always", "hidden"]);
});

test("a chart that throws is reported and does not stop the others", () => {
  const errors = [];
  let clock = 0;
  const frames = [];
  const scheduler = createScheduler({
    getState: () => null,
    now: () => clock++,
    requestFrame: (fn) => frames.push(fn),
    observerFactory: null,
    onError: (error) => errors.push(error.message),
  });
  const drawn = [];
  scheduler.add({ name: "bad", update() { throw new Error("boom"); } });
  scheduler.add({ name: "good", update() { drawn.push("good"); } });
  frames.shift()();
  assert.deepEqual(errors, ["boom"]);
  assert.deepEqual(drawn, ["good"]);
  assert.equal(scheduler.stats.renders, 2);
});

test("a widget may keep its own, shorter pace", () => {
  const h = harness({ costs: { status: 1, chart: 1 }, options: { minIntervalMs: 400, maxIntervalMs: 400 } });
  const status = h.widget("status");
  status.intervalMs = 100;
  h.scheduler.add(status);
  h.scheduler.add(h.widget("chart"));
  h.runFrame();
  h.advance(150);
  h.scheduler.invalidate();
  h.runFrame();
  assert.deepEqual(h.drawn, ["status", "chart", "status"]);
});

test("on a slow machine the interval widens to keep redraws within maxBusy, down to 1/s", () => {
  const options = { minIntervalMs: 300, preferredIntervalMs: 450, maxIntervalMs: 1000, targetBusy: 0.2, maxBusy: 0.35 };
  const settled = (cost) => {
    const h = harness({ costs: Object.fromEntries([..."abcdefghi"].map((n) => [n, cost])), options });
    for (const name of "abcdefghi") h.scheduler.add(h.widget(name));
    // Every chart redraws many times, so each one's cost estimate settles on what it costs.
    for (let round = 0; round < 400; round += 1) {
      h.scheduler.invalidate();
      h.advance(2000);
      while (h.frames.length) h.runFrame();
    }
    return h.scheduler.interval;
  };
  // Fast: 9 charts of 10 ms: 90 / 0.2 = 450, and 90 / 0.35 = 257 is within it.
  assert.ok(Math.abs(settled(10) - 450) < 1);
  // In between: 180 ms of charts redraw every 180 / 0.35 = 514 ms.
  assert.ok(Math.abs(settled(20) - 180 / 0.35) < 1);
  // 4x slower: 360 / 0.35 = 1029 ms would be needed; once a second is the floor.
  assert.equal(settled(40), 1000);
});

test("right after input no redraw starts; the skipped frame comes back after the quiet", () => {
  const h = harness({ options: { quietAfterInputMs: 250 } });
  h.scheduler.add(h.widget("a"));
  h.scheduler.input();
  h.runFrame();
  assert.deepEqual(h.drawn, [], "held while the person is acting");
  assert.equal(h.scheduler.stats.held, 1);
  assert.equal(h.timers.length, 1);
  assert.equal(h.timers[0].at, 250);
  h.advance(250);
  h.timers.shift().fn();
  h.runFrame();
  assert.deepEqual(h.drawn, ["a"]);
});

test("the browser's part of a turn is measured before the next turn and shared by cost", () => {
  let clock = 0;
  const order = [];
  const turns = [];
  const paints = [];
  const scheduler = createScheduler({
    getState: () => null,
    now: () => clock,
    requestFrame: (fn) => {
      order.push("turn");
      turns.push(fn);
    },
    afterPaint: (fn) => {
      order.push("paint");
      paints.push(fn);
    },
    observerFactory: null,
    options: { frameBudgetMs: 11, minIntervalMs: 0, preferredIntervalMs: 0, maxIntervalMs: 0, targetBusy: 1, costSmoothing: 1 },
  });
  const widget = (name, ms) => ({ name, update() { clock += ms; } });
  for (const [name, ms] of [["a", 3], ["b", 1], ["c", 1]]) scheduler.add(widget(name, ms));
  order.length = 0;
  turns.shift()();
  // a (3 ms) and b (estimated 8 ms before it ever drew: 3 + 8 fits 11) drew; c waits.
  assert.deepEqual(scheduler.entries.map((e) => e.renders), [1, 1, 0]);
  // The measurement's frame is asked for first, so its task ends before c's turn begins.
  assert.deepEqual(order, ["paint", "turn"]);
  paints.shift()(8);
  // 8 ms of style, layout and paint, shared 3:1 as the two charts' scripts took.
  assert.deepEqual(scheduler.entries.map((e) => e.paint), [6, 2, 0]);
});
