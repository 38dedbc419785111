// Compact (v2) frames: references, sparse counts and omitted zeros read back as v1's taps.
import assert from "node:assert/strict";
import { test } from "node:test";

import { histogramShares, occupiedBins } from "../../frontend/js/series.js";
import { applyMessage, columnsOf, createState } from "../../frontend/js/state.js";
import { expandFrame, expandTap, expandTaps } from "../../frontend/js/wire.js";
import { event, frame, hello } from "./fixtures.mjs";

/**
 * The writer's side of v2, written from the contract alone: a tap equal to an earlier one
 * of its layer becomes that tap's name; counts keep first .. last non-zero bin (first left
 * out when 0); zero under/overflow and non-finite counts are left out.
 */
function compactTaps(taps) {
  const out = {};
  const seen = [];
  for (const [name, tap] of Object.entries(taps)) {
    const same = seen.find(([, earlier]) => JSON.stringify(earlier) === JSON.stringify(tap));
    if (same) {
      out[name] = same[0];
      continue;
    }
    seen.push([name, tap]);
    const compact = { ...tap };
    const nonzero = tap.counts.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0);
    compact.counts = nonzero.length ? tap.counts.slice(nonzero[0], nonzero.at(-1) + 1) : [];
    if (nonzero.length && nonzero[0] > 0) compact.first = nonzero[0];
    for (const key of ["underflow", "overflow", "nonfinite"]) if (compact[key] === 0) delete compact[key];
    out[name] = compact;
  }
  return out;
}

function compactFrame(v1) {
  const copy = structuredClone(v1);
  copy.v = 2;
  for (const entry of Object.values(copy.variants)) {
    for (const layer of entry.layers ?? []) layer.taps = compactTaps(layer.taps);
  }
  return copy;
}

/** A v1 frame whose taps exercise every case: spans at either end, empty, outside counts. */
function variedFrame(step) {
  const f = frame(step);
  const taps = f.variants.plain.layers[0].taps;
  taps.linear_out = { ...taps.linear_out, counts: [0, 0, 7, 3], underflow: 0, overflow: 2, nonfinite: 1 };
  taps.act_input = { ...taps.linear_out }; // plain: act_input is linear_out
  taps.act_output = { ...taps.act_output, counts: [0, 0, 0, 0], underflow: 4, overflow: 6 };
  const bnTaps = f.variants.bn.layers[1].taps;
  bnTaps.linear_out = { ...bnTaps.linear_out, counts: [5, 5, 0, 0] };
  return f;
}

test("a tap's sparse counts expand to every bin, zeros outside the span", () => {
  const tap = { counts: [3, 0, 4], first: 2, overflow: 1, percentiles: [0], mean: 0.1 };
  assert.deepEqual(expandTap(tap, 8), {
    counts: [0, 0, 3, 0, 4, 0, 0, 0],
    underflow: 0,
    overflow: 1,
    nonfinite: 0,
    percentiles: [0],
    mean: 0.1,
  });
  assert.deepEqual(expandTap({ counts: [9] }, 3).counts, [9, 0, 0], "first left out means bin 0");
  assert.deepEqual(expandTap({ counts: [], underflow: 5 }, 3), { counts: [0, 0, 0], underflow: 5, overflow: 0, nonfinite: 0 });
  // Edges unknown (no bins): the span sent is kept, nothing is lost.
  assert.deepEqual(expandTap({ counts: [1, 2], first: 1 }, -1).counts, [0, 1, 2]);
  assert.equal("first" in expandTap(tap, 8), false);
  assert.deepEqual(tap.counts, [3, 0, 4], "the message is left as it was");
});

test("a tap written as a name is the earlier tap's object; a projected tap keeps no counts", () => {
  const taps = expandTaps(
    {
      linear_out: { counts: [1], first: 1, mean: 0.5 },
      norm_xhat: { mean: 0, std: 1, percentiles: [0] }, // projected away: statistics only
      norm_out: { counts: [2, 2], mean: 0.2 },
      act_input: "norm_out",
      act_output: "nowhere",
    },
    () => 3,
  );
  assert.deepEqual(taps.linear_out.counts, [0, 1, 0]);
  assert.equal(taps.act_input, taps.norm_out);
  assert.deepEqual(taps.act_input.counts, [2, 2, 0]);
  assert.equal("counts" in taps.norm_xhat, false);
  assert.equal(taps.norm_xhat.underflow, 0);
  assert.equal(taps.act_output, null, "an unknown name reads as no tap");
  // The charts read a tap without counts as no histogram, without failing.
  assert.equal(histogramShares(taps.norm_xhat), null);
});

test("expanding a compacted frame gives the v1 frame back, per variant, layer and tap", () => {
  const v1 = variedFrame(40);
  const v2 = compactFrame(v1);
  // The encoder really compacted: a reference, a span with first, zeros left out.
  const plainTaps = v2.variants.plain.layers[0].taps;
  assert.equal(plainTaps.act_input, "linear_out");
  assert.deepEqual([plainTaps.linear_out.first, plainTaps.linear_out.counts], [2, [7, 3]]);
  assert.equal("underflow" in plainTaps.linear_out, false);
  assert.deepEqual(plainTaps.act_output.counts, []);
  const expanded = expandFrame(v2, () => 4);
  assert.deepEqual({ ...expanded, v: 1 }, v1);
});

test("a v2 frame reads into the same state as the v1 frame it encodes", () => {
  const steps = [0, 10, 20];
  const v1 = applyMessagesOf([hello(), ...steps.map(variedFrame)]);
  const v2 = applyMessagesOf([hello(), ...steps.map((s) => compactFrame(variedFrame(s)))]);
  const strip = (columns) => columns.map(({ variants, step }) => ({ step, variants }));
  assert.deepEqual(strip(columnsOf(v2)), strip(columnsOf(v1)));
  assert.deepEqual(occupiedBins(columnsOf(v2), ["plain"], 0, "linear_out", 0), [2, 3]);
  assert.deepEqual(occupiedBins(columnsOf(v2), ["bn"], 1, "linear_out", 0), [0, 1]);
});

test("the bins come from each tap's own edges in the hello", () => {
  const start = hello({ depth: 1 });
  start.edges[0].act_input = [-3, -2, -1, 0, 1, 2, 3]; // 6 bins here, 4 elsewhere
  const compact = frame(0, { depth: 1 });
  compact.v = 2;
  compact.variants.plain.layers[0].taps = { linear_out: { counts: [1], first: 1 }, act_input: { counts: [2], first: 4 }, act_output: { counts: [] } };
  const taps = columnsOf(applyMessagesOf([start, compact]))[0].variants.plain.layers[0].taps;
  assert.deepEqual(taps.linear_out.counts, [0, 1, 0, 0]);
  assert.deepEqual(taps.act_input.counts, [0, 0, 0, 0, 2, 0]);
  assert.deepEqual(taps.act_output.counts, [0, 0, 0, 0]);
});

test("v1 frames pass through untouched (stored runs on disk)", () => {
  const v1 = frame(5);
  const state = applyMessagesOf([hello(), v1]);
  assert.equal(columnsOf(state)[0].variants, v1.variants, "the very object, not a copy");
});

test("a history of v2 frames and events equals the same messages one by one", () => {
  const messages = [compactFrame(variedFrame(0)), event(5, "lr", { value: 0.1, previous: 0.5 }), compactFrame(variedFrame(10))];
  const oneByOne = applyMessagesOf([hello(), ...messages]);
  const joined = applyMessagesOf([hello(), { v: 2, type: "history", messages }]);
  assert.equal(joined.revision, applyMessagesOf([hello()]).revision + 1);
  assert.deepEqual({ ...joined, revision: 0 }, { ...oneByOne, revision: 0 });
});

function applyMessagesOf(messages) {
  return messages.reduce(applyMessage, createState());
}
