// A sweep's view, its pure parts: the reducer, progress in words, estimates, values, ticks, traces.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RULES } from "./rules.mjs";
import { accuracyTraces, noiseTraces, sweepAxis, tickValues } from "../../frontend/js/charts/sweepchart.js";
import { applySweepMessage, createSweepState, durationText, estimateSeconds, isSweepHello, parseSweepValues, progressText } from "../../frontend/js/sweep.js";
import { buildConfig, presetValues } from "../../frontend/js/setup.js";

// Messages shaped as docs/protocol.md's Sweeps section says.
const hello = (values = [2, 8, 32]) => ({
  v: 1,
  type: "hello",
  kind: "sweep",
  preset: "batch-sweep",
  config: { variants: ["plain", "bn"], steps: 1000 },
  field: "batch_size",
  values,
  dataset: { name: "digits", n_train: 1437, n_test: 360 },
});
const point = (index, value, seconds = 10, bnAcc = 0.9) => ({
  v: 1,
  type: "point",
  index,
  total: 3,
  field: "batch_size",
  value,
  seconds,
  variants: {
    plain: { status: "diverged", diverged_at: 5, loss: null, test: null },
    bn: { status: "trained", diverged_at: null, loss: 0.3, test: { step: 999, acc: bnAcc } },
  },
  batch_noise: { bn: [{ mean: 1 / Math.sqrt(value), var: 0.5, reference: 1 / Math.sqrt(value) }] },
});
const stateEvent = (state, message) => ({ v: 1, type: "event", step: 1, kind: "state", state, ...(message ? { message } : {}) });
const reduce = (messages) => messages.reduce(applySweepMessage, createSweepState());

test("points collect in index order; a hello (a reconnect) starts over, so none counts twice", () => {
  const state = reduce([hello(), point(1, 8), point(0, 2), point(1, 8)]);
  assert.deepEqual(state.points.map((p) => p.index), [0, 1]);
  const again = reduce([hello(), point(0, 2), point(1, 8), hello(), point(0, 2)]);
  assert.equal(again.points.length, 1);
  assert.equal(isSweepHello(hello()), true);
  assert.equal(isSweepHello({ type: "hello", config: {} }), false, "a run's hello is not a sweep's");
  const before = reduce([hello()]);
  assert.equal(applySweepMessage(before, { type: "frame" }), before, "unknown messages change nothing");
});

test("progress says which point runs now, the time so far and left, or how the sweep ended", () => {
  assert.equal(progressText(reduce([hello()])), "Point 1 of 3: batch size 2");
  // Two points of 10 s and 30 s: 40 s so far, 20 s a point, one point left.
  const running = reduce([hello(), point(0, 2, 10), point(1, 8, 30)]);
  assert.equal(progressText(running), "Point 3 of 3: batch size 32 · 40 s so far, about 20 s left");
  const done = reduce([hello(), point(0, 2, 100), point(1, 8, 100), point(2, 32, 21), stateEvent("finished")]);
  assert.equal(progressText(done), "Finished: 3 points in 3 min 41 s");
  assert.equal(progressText(reduce([hello(), point(0, 2), stateEvent("stopped")])), "Stopped after 1 of 3 points");
  assert.equal(progressText(reduce([hello(), stateEvent("failed", "out of memory")])), "Failed after 0 of 3 points: out of memory");
  assert.equal(durationText(89.4), "89 s");
  assert.equal(durationText(90), "1 min 30 s");
});

test("the estimate scales the preset's measured sweep to the steps and points asked for", () => {
  const rule = RULES.sweeps["batch-sweep"];
  assert.ok(rule.measured_s > 0 && rule.values.steps === 1000 && rule.sweep_values.length === 8);
  assert.equal(estimateSeconds(rule, 1000, 8), rule.measured_s);
  // A quarter of the steps at half the points: an eighth of the time.
  assert.equal(estimateSeconds(rule, 250, 4), rule.measured_s / 8);
  assert.equal(estimateSeconds({ ...rule, measured_s: null }, 1000, 8), null);
  assert.equal(estimateSeconds(rule, Number.NaN, 8), null, "steps not typed yet: no estimate");
});

test("swept values are positive, increasing and at most max_points", () => {
  assert.deepEqual(parseSweepValues("2, 4,8 16", 16), { ok: true, values: [2, 4, 8, 16] });
  assert.deepEqual(parseSweepValues("0.01, 0.1", 16).values, [0.01, 0.1]);
  for (const wrong of ["", "4, 2", "2, 2", "0, 1", "-1", "a, 2", "1, 2, 3"]) {
    assert.equal(parseSweepValues(wrong, 2).ok, false, wrong);
  }
  assert.equal(parseSweepValues("1, 2", 2).ok, true, "max_points itself is allowed");
});

test("a sweep preset fills the form and sends its values; a run preset sends none", () => {
  const values = presetValues("lr-sweep");
  assert.equal(values.activation, "relu");
  assert.equal(values.steps, 500);
  const raw = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Array.isArray(v) ? v : String(v)]));
  const { config } = buildConfig({ ...raw, sweep_values: "0.1, 1" }, { cumulative: false });
  assert.deepEqual(config.sweep_values, [0.1, 1]);
  assert.equal(config.preset, "lr-sweep");
  const refused = buildConfig({ ...raw, sweep_values: "1, 0.1" }, { cumulative: false });
  assert.match(refused.errors.sweep_values, /increasing order/);
  const run = buildConfig({ ...raw, preset: "noisy-bn", sweep_values: "0.1" }, { cumulative: false }).config;
  assert.equal("sweep_values" in run, false);
});

test("log-axis ticks never sit closer than one label's width", () => {
  const values = [2, 4, 8, 16, 32, 64, 128, 256];
  assert.deepEqual(tickValues(values, 480), values, "8 labels fit in 480 px");
  for (const width of [120, 200, 300]) {
    const ticks = tickValues(values, width);
    const gap = (Math.log10(256 / 2) * 44) / width; // decades one 44 px label takes
    for (let i = 1; i < ticks.length; i += 1) assert.ok(Math.log10(ticks[i] / ticks[i - 1]) >= gap - 1e-12, `${width}: ${ticks}`);
    assert.equal(ticks[0], 2);
    assert.equal(ticks.at(-1), 256, "the largest is always labelled");
    assert.ok(ticks.length < values.length);
  }
  const axis = sweepAxis([0.01, 0.03, 0.1, 0.3, 1, 3, 10], 480, "lr");
  assert.equal(axis.type, "log");
  assert.deepEqual(axis.ticktext, ["0.01", "0.03", "0.1", "0.3", "1", "3", "10"]);
  assert.ok(axis.range[0] < -2 && axis.range[1] > 1, "every planned value inside the range");
});

test("accuracy traces: eval-mode test accuracy per variant, ✕ where it did not train", () => {
  const state = reduce([hello(), point(0, 2, 10, 0.5), point(1, 8, 10, 0.8)]);
  const [plain, bn] = accuracyTraces(state);
  assert.deepEqual(bn.x, [2, 8]);
  assert.deepEqual(bn.y, [0.5, 0.8]);
  assert.deepEqual(bn.marker.symbol, ["circle", "circle"]);
  assert.deepEqual(plain.y, [null, null]);
  assert.deepEqual(plain.marker.symbol, ["x", "x"]);
  const { traces, measured } = noiseTraces(state);
  assert.deepEqual(measured, ["bn"], "only variants with running statistics");
  const reference = traces.at(-1);
  assert.deepEqual(reference.x, [2, 8, 32]);
  assert.deepEqual(reference.y, [2, 8, 32].map((b) => 1 / Math.sqrt(b)));
  assert.deepEqual(traces[0].y, [1 / Math.sqrt(2), 1 / Math.sqrt(8)]);
});
