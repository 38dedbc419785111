// Derived chart arrays: what each chart plots, computed from state columns.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  binCentres,
  bnChannel,
  columnPosition,
  driftLine,
  histogramShares,
  markedEvents,
  extent,
  nearestColumn,
  occupiedBins,
  percentileLines,
  stepsOf,
  testMetric,
  trainMetric,
} from "../../frontend/js/series.js";
import { applyMessage, columnsOf, createState, testsOf } from "../../frontend/js/state.js";
import { event, frame, hello } from "./fixtures.mjs";

function stateOf(messages) {
  return messages.reduce(applyMessage, createState());
}

test("time series line up with the steps, with null where a value is missing", () => {
  const bad = frame(10);
  bad.variants.plain.loss = null;
  bad.nonfinite = { "/variants/plain/loss": "nan" };
  delete bad.variants.bn.layers; // diverged or skipped: no layers
  const state = stateOf([hello(), frame(0), frame(5), bad]);
  const columns = columnsOf(state);
  assert.deepEqual(stepsOf(columns), [0, 5, 10]);
  assert.deepEqual(trainMetric(columns, "plain", "loss"), [0.7, 0.6995, null]);
  assert.deepEqual(driftLine(columns, "plain", 0), [null, 0.05, 0.1]);
  assert.deepEqual(driftLine(columns, "bn", 1), [null, 0.05, null]);
  assert.deepEqual(trainMetric(columns, "bn_after", "loss"), [null, null, null]);
});

test("percentile lines come out one array per percentile", () => {
  const state = stateOf([hello(), frame(0), frame(100)]);
  const p = percentileLines(columnsOf(state), "plain", 0, "act_input", 5);
  assert.equal(p.length, 5);
  assert.deepEqual(p[2], [0, 1]);
  assert.deepEqual(p[0], [-1.5, -0.5]);
  const missing = percentileLines(columnsOf(state), "plain", 0, "norm_xhat", 5);
  assert.deepEqual(missing[2], [null, null]);
});

test("test metrics only at test steps", () => {
  const state = stateOf([hello(), frame(0, { test: true }), frame(5), frame(10, { test: true })]);
  assert.deepEqual(testMetric(testsOf(state), "bn", "acc"), { x: [0, 10], y: [0.55, 0.55] });
});

test("BN channel series pick one channel of every field", () => {
  const state = stateOf([hello(), frame(0), frame(2)]);
  const channel0 = bnChannel(columnsOf(state), "bn", 0, 0);
  assert.deepEqual(channel0.batch_mean, [0, 0.2]);
  assert.deepEqual(channel0.batch_var, [1, 3]);
  assert.deepEqual(channel0.gamma, [1, 1.002]);
  const plain = bnChannel(columnsOf(state), "plain", 0, 0);
  assert.deepEqual(plain.running_var, [null, null]);
});

test("a projected stream's BN lists hold only the channels it names", () => {
  // The fixture's bn holds channels [0, 1]; projected onto channel 1 it keeps index 1 alone.
  const project = (f, channel, width = 2) => {
    for (const layer of f.variants.bn.layers) {
      const bn = layer.bn;
      layer.bn = { channels: [channel], r_max: 3 };
      for (const field of Object.keys(bn)) layer.bn[field] = channel < width ? [bn[field][channel]] : [];
    }
    return f;
  };
  const full = columnsOf(stateOf([hello(), frame(0), frame(2)]));
  const projected = columnsOf(stateOf([hello(), project(frame(0), 1), project(frame(2), 1)]));
  assert.deepEqual(bnChannel(projected, "bn", 0, 1), bnChannel(full, "bn", 0, 1));
  assert.deepEqual(bnChannel(projected, "bn", 0, 1).batch_var, [2, 2]);
  // A channel the stream does not hold reads as missing, not as the list's first entry.
  assert.deepEqual(bnChannel(projected, "bn", 0, 0).batch_mean, [null, null]);
  // Past the layer's width the lists are empty.
  const past = columnsOf(stateOf([hello(), project(frame(0), 5)]));
  assert.deepEqual(bnChannel(past, "bn", 0, 5).gamma, [null]);
});

test("taps without counts (projected away) read as no histogram", () => {
  const stats = { percentiles: [0, 0, 0, 0, 0], mean: 0, std: 1, min: -1, max: 1, underflow: 0, overflow: 0, nonfinite: 0 };
  assert.equal(histogramShares(stats), null);
  const column = { step: 0, variants: { plain: { layers: [{ taps: { act_input: stats } }] }, bn: { layers: [{ taps: { act_input: { counts: [0, 1, 0] } } }] } } };
  assert.equal(occupiedBins([column], ["plain"], 0, "act_input"), null);
  assert.deepEqual(occupiedBins([column], ["plain", "bn"], 0, "act_input", 0), [1, 1]);
});

test("histogram shares count values outside the range in the total", () => {
  const shares = histogramShares({ counts: [1, 2, 1], underflow: 2, overflow: 3, nonfinite: 1 });
  assert.deepEqual(shares.shares, [0.1, 0.2, 0.1]);
  assert.equal(shares.underflow, 0.2);
  assert.equal(shares.overflow, 0.3);
  assert.equal(shares.nonfinite, 0.1);
  assert.deepEqual(histogramShares({ counts: [0, 0], underflow: 0, overflow: 0, nonfinite: 0 }).shares, [0, 0]);
  assert.equal(histogramShares(null), null);
  assert.deepEqual(binCentres([-1, 0, 2]), [-0.5, 1]);
});

test("steps map to columns for markers and the cursor", () => {
  const columns = [0, 10, 20, 40].map((step) => ({ step }));
  assert.equal(nearestColumn(columns, 12), 1);
  assert.equal(nearestColumn(columns, 16), 2);
  assert.equal(nearestColumn(columns, 99), 3);
  assert.equal(nearestColumn([], 5), -1);
  assert.equal(columnPosition(columns, 30), 2.5);
  assert.equal(columnPosition(columns, 10), 1);
  assert.equal(columnPosition(columns, -5), 0);
  assert.equal(columnPosition(columns, 100), 3);
});

test("marked events are the settings changes and divergences, newest last", () => {
  const events = [
    event(0, "state", { state: "running" }),
    event(3, "lr", { value: 0.1, previous: 0.5 }),
    event(7, "diverged", { variant: "plain" }),
    event(9, "batch_size", { value: 8, previous: 60 }),
  ];
  assert.deepEqual(markedEvents(events).map((e) => e.step), [3, 7, 9]);
  assert.deepEqual(markedEvents(events, 2).map((e) => e.step), [7, 9]);
});

test("occupied bins span every variant and column, widened by a margin and clamped", () => {
  const column = (plain, bn) => ({ step: 0, variants: { plain: { layers: [{ taps: { act_input: { counts: plain } } }] }, bn: { layers: [{ taps: { act_input: { counts: bn } } }] } } });
  const columns = [column([0, 0, 1, 0, 0, 0], [0, 0, 0, 2, 0, 0]), column([0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 3, 0])];
  assert.deepEqual(occupiedBins(columns, ["plain", "bn"], 0, "act_input"), [1, 5]);
  assert.deepEqual(occupiedBins(columns, ["plain"], 0, "act_input", 0), [2, 3]);
  assert.deepEqual(occupiedBins(columns, ["plain", "bn"], 0, "act_input", 3), [0, 5]);
  assert.equal(occupiedBins([column([0, 0], [0, 0])], ["plain", "bn"], 0, "act_input"), null);
  assert.equal(occupiedBins([], ["plain"], 0, "act_input"), null);
});

test("extent spans every finite value of several arrays", () => {
  assert.deepEqual(extent([[1, null, 3], [-2, NaN]]), [-2, 3]);
  assert.equal(extent([[null]]), null);
});

test("gradient ICS series: one per variant and layer, skipping points without the variant", async () => {
  const { icsLayers, icsMetric } = await import("../../frontend/js/series.js");
  const { icsOf } = await import("../../frontend/js/state.js");
  const state = [hello(), frame(0, { ics: true }), frame(5), frame(10, { ics: true, variants: ["bn"] })].reduce(
    applyMessage,
    createState(),
  );
  const points = icsOf(state);
  assert.equal(icsLayers(points), 3);
  assert.equal(icsLayers([]), 0);
  assert.deepEqual(icsMetric(points, "plain", 2, "grad_diff"), { x: [0], y: [0.2] });
  assert.deepEqual(icsMetric(points, "bn", 1, "grad_cos"), { x: [0, 10], y: [0.9, 0.9] });
  const broken = [{ step: 3, variants: { bn: [{ grad_diff: NaN }] } }];
  assert.deepEqual(icsMetric(broken, "bn", 0, "grad_diff"), { x: [3], y: [null] });
  assert.deepEqual(icsMetric(broken, "bn", 4, "grad_diff"), { x: [3], y: [null] });
});

test("a typical unit's percentiles come from drift_fixed, a gap where a frame has none", async () => {
  const { typicalUnitLines } = await import("../../frontend/js/series.js");
  const column = (step, fixed) => ({ step, variants: { plain: { layers: [{ drift_fixed: fixed }] } } });
  const columns = [
    column(0, { unit: 4, unit_percentiles: [-1, 0, 1] }),
    column(50, null),
    column(100, { unit: 4, unit_percentiles: [-2, 0.5, 3] }),
  ];
  const { lines, unit } = typicalUnitLines(columns, "plain", 0);
  assert.equal(unit, 4);
  assert.deepEqual(lines, [[-1, null, -2], [0, null, 0.5], [1, null, 3]]);
  assert.deepEqual(typicalUnitLines(columns, "bn", 0).lines, [[null, null, null], [null, null, null], [null, null, null]]);
});
