// Lesson claims in the page (claims.js): the hand-made records of tests/test_lessons.py give the
// numbers computed there by hand; the same through the page's state; and the lesson panel's
// pure helpers (lessons.js). tests/test_lessons.py also runs both languages on these records.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RULES } from "./rules.mjs";
import { claimSentence, evaluateClaim, evaluateRecords, formatClaimNumber, KINDS } from "../../frontend/js/claims.js";
import { lessonRunStore, scheduledChanges, watchTarget } from "../../frontend/js/lessons.js";
import { applyMessage, createState } from "../../frontend/js/state.js";

const HELLO = { type: "hello", percentiles: [1, 15, 50, 85, 99] };
const TEXT = { en: { holds: "holds {value}", fails: "fails {value}" } };
const close = (actual, expected) => assert.ok(Math.abs(actual - expected) < 1e-12, `${actual} is not ${expected}`);

function claim(kind, threshold, params, compare = ">=") {
  return { kind, params, threshold, compare, text: TEXT };
}

const frame = (step, variants) => ({ v: 1, type: "frame", step, variants });

function withTap(tap, stats, layer = 0) {
  const layers = Array.from({ length: layer + 1 }, () => ({ taps: {} }));
  layers[layer].taps[tap] = stats;
  return { status: "training", layers };
}

/** The records applied to a fresh page state, as the websocket would deliver them. */
function stateOf(records, options = {}) {
  let state = createState(options);
  for (const message of [HELLO, ...records]) state = applyMessage(state, structuredClone(message));
  return state;
}

// ---- unit_drift_ratio ----

const SHIFT = { variant: "plain", reference: "bn", layer: 0 };

function withDrift(unitMedian, layer = 0) {
  const layers = Array.from({ length: layer + 1 }, () => ({ taps: {} }));
  layers[layer].drift_fixed = { floor: 0.1, unit_median: unitMedian };
  return { status: "training", layers };
}

function driftFrames() {
  // plain: null (a variant's first frame), 1.5, 2.5 -> moved 4; bn: null, 0.25, 0.25 -> 0.5.
  const plain = [null, 1.5, 2.5];
  const bn = [null, 0.25, 0.25];
  return [0, 50, 100].map((step, i) => frame(step, { plain: withDrift(plain[i]), bn: withDrift(bn[i]) }));
}

test("unit_drift_ratio: the hand-computed numbers, on records and on the page's state", () => {
  const c = claim("unit_drift_ratio", 2, { ...SHIFT, from_step: 0, to_step: 100 });
  const expected = { holds: true, numbers: { value: 8, ratio: 8, moved: 4, reference_moved: 0.5 } };
  assert.deepEqual(evaluateRecords(c, HELLO, driftFrames()), expected);
  assert.deepEqual(evaluateClaim(c, stateOf(driftFrames())), expected);
  assert.equal(evaluateRecords({ ...c, threshold: 9 }, HELLO, driftFrames()).holds, false);
});

test("unit_drift_ratio waits for its range and two frames, and counts frames both variants have", () => {
  const frames = driftFrames();
  assert.equal(evaluateRecords(claim("unit_drift_ratio", 2, { ...SHIFT, from_step: 0, to_step: 150 }), HELLO, frames).holds, null);
  assert.equal(evaluateRecords(claim("unit_drift_ratio", 2, { ...SHIFT, from_step: 100, to_step: 100 }), HELLO, frames).holds, null);
  frames.push(frame(150, { plain: withDrift(7), bn: withDrift(null) }));
  const oneSided = evaluateRecords(claim("unit_drift_ratio", 2, { ...SHIFT, from_step: 0, to_step: 150 }), HELLO, frames);
  assert.equal(oneSided.numbers.moved, 4);
  assert.equal(oneSided.numbers.reference_moved, 0.5);
});

// ---- metric_gap ----

const GAP = { variant: "bn", metric: "acc", reference: "bn", reference_metric: "acc_train_mode" };

function scoredFrames() {
  const tests = [[0.9, 0.7], [0.8, 0.7], null, [0.7, null]]; // null: not scored at that step
  const frames = [100, 200, 300, 400].map((step, i) => {
    const pair = tests[i];
    const test = pair === null ? null : { acc: pair[0], acc_train_mode: pair[1] };
    return frame(step, { bn: { status: "training", loss: 1.0, test } });
  });
  frames.push(frame(450, { bn: { status: "training", loss: 1.0 } })); // no test at this step
  return frames;
}

test("metric_gap averages the paired tests, compares both ways and needs two", () => {
  for (const judged of [(c) => evaluateRecords(c, HELLO, scoredFrames()), (c) => evaluateClaim(c, stateOf(scoredFrames()))]) {
    const result = judged(claim("metric_gap", 0.1, { ...GAP, from_step: 0, to_step: 450 }));
    assert.equal(result.holds, true);
    close(result.numbers.gap, (0.2 + 0.1) / 2);
    close(result.numbers.gap_points, 15);
    assert.equal(result.numbers.tests, 2);
    assert.equal(judged(claim("metric_gap", 0.2, { ...GAP, from_step: 0, to_step: 400 })).holds, false);
    assert.equal(judged(claim("metric_gap", 0.2, { ...GAP, from_step: 0, to_step: 400 }, "<=")).holds, true);
    assert.equal(judged(claim("metric_gap", 0, { ...GAP, from_step: 150, to_step: 450 })).holds, null);
  }
});

// ---- loss_noise ----

const NOISE = { variant: "plain", from_step: 0, change_step: 40, to_step: 70 };
const lossFrames = (before, after) => [...before, ...after].map((loss, i) => frame(10 * i, { plain: { status: "training", loss } }));

test("loss_noise is the ratio of the mean frame-to-frame changes after and before", () => {
  const records = lossFrames([1.0, 1.1, 1.0, 1.1], [1.0, 1.5, 1.0, 1.5]);
  for (const result of [evaluateRecords(claim("loss_noise", 3, NOISE), HELLO, records), evaluateClaim(claim("loss_noise", 3, NOISE), stateOf(records))]) {
    assert.equal(result.holds, true);
    close(result.numbers.before, 0.1);
    close(result.numbers.after, 0.5);
    close(result.numbers.ratio, 5);
  }
  assert.equal(evaluateRecords(claim("loss_noise", 3, NOISE), HELLO, lossFrames([1.0, 1.1, 1.0, 1.1], [1.0, 1.1, 1.0, 1.1])).holds, false);
  const short = lossFrames([1.0, 1.1], [1.0, 1.5, 1.0, 1.5]).slice(0, -1);
  assert.equal(evaluateRecords(claim("loss_noise", 3, { ...NOISE, to_step: 40 }), HELLO, short).holds, null);
});

// ---- event_present ----

const SKIPPED = { kind: "skipped", match: { variants: ["bn"] }, from_step: 0, to_step: 10 };

test("event_present matches kind, fields and steps, and is decided by the first match", () => {
  const records = [{ type: "event", step: 0, kind: "skipped", variants: ["bn", "brn"] }, frame(10, { plain: { status: "training" } })];
  const expected = { holds: true, numbers: { value: 1, count: 1, step: 0 } };
  assert.deepEqual(evaluateRecords(claim("event_present", 1, SKIPPED), HELLO, records), expected);
  assert.deepEqual(evaluateClaim(claim("event_present", 1, SKIPPED), stateOf(records)), expected);
  const other = [{ type: "event", step: 0, kind: "skipped", variants: ["ghost_bn"] }, records[1]];
  assert.equal(evaluateRecords(claim("event_present", 1, SKIPPED), HELLO, other).holds, false);
  // Before the range is run through: undecided without a match, decided with one.
  assert.equal(evaluateRecords(claim("event_present", 1, SKIPPED), HELLO, [frame(5, { plain: { status: "training" } })]).holds, null);
  assert.equal(evaluateRecords(claim("event_present", 1, SKIPPED), HELLO, records.slice(0, 1)).holds, true);
});

// ---- xhat_standard ----

const XHAT = { variant: "bn", layer: 0, from_step: 0, to_step: 100, mean_tol: 0.01, std_tol: 0.01 };

function xhatFrames(xhatStd) {
  const outs = [[0, 1], [0.1, 1.2], [0.3, 1.4]];
  return [0, 50, 100].map((step, i) => {
    const entry = withTap("norm_xhat", { mean: 0.001, std: xhatStd });
    entry.layers[0].taps.norm_out = { mean: outs[i][0], std: outs[i][1] };
    return frame(step, { bn: entry });
  });
}

test("xhat_standard holds while γ and β move the output, fails off standard or unmoved", () => {
  for (const result of [evaluateRecords(claim("xhat_standard", 0.5, XHAT), HELLO, xhatFrames(1.002)), evaluateClaim(claim("xhat_standard", 0.5, XHAT), stateOf(xhatFrames(1.002)))]) {
    assert.equal(result.holds, true);
    close(result.numbers.out_moved, 0.299 + 0.398);
    close(result.numbers.xhat_std, 0.002);
  }
  assert.equal(evaluateRecords(claim("xhat_standard", 0.5, XHAT), HELLO, xhatFrames(1.05)).holds, false);
  assert.equal(evaluateRecords(claim("xhat_standard", 0.8, XHAT), HELLO, xhatFrames(1.002)).holds, false);
  assert.equal(evaluateRecords(claim("xhat_standard", 0.5, XHAT), HELLO, xhatFrames(1.0).slice(0, 1)).holds, null);
});

test("every kind of the server's lessons is known here", () => {
  const kinds = new Set(RULES.lessons.flatMap((lesson) => lesson.claims.map((c) => c.kind)));
  for (const kind of kinds) assert.ok(kind in KINDS, kind);
  assert.deepEqual(evaluateClaim({ kind: "no_such_kind", params: {} }, stateOf(driftFrames())), { holds: null, numbers: {} });
});

// ---- the page's history capacity ----

test("a range the page downsampled is judged on the frames it still holds", () => {
  // 40 frames in a state that keeps at most 8: the claim is what the kept frames give.
  const loss = (i) => (i < 20 ? 1 + 0.1 * (i % 3) : 1 + (i % 3));
  const records = Array.from({ length: 40 }, (_, i) => frame(i, { plain: { status: "training", loss: loss(i) } }));
  const noise = claim("loss_noise", 1, { variant: "plain", from_step: 0, change_step: 20, to_step: 39 });
  const state = stateOf(records, { capacity: 8 });
  const keptSteps = new Set(state.columns.onStride.concat(state.columns.newest ?? []).map((c) => c.step));
  assert.ok(keptSteps.size <= 8 && keptSteps.has(0) && keptSteps.has(39), [...keptSteps].join());
  const result = evaluateClaim(noise, state);
  assert.notEqual(result.holds, null);
  assert.deepEqual(result, evaluateRecords(noise, HELLO, records.filter((r) => keptSteps.has(r.step))));
  assert.notDeepEqual(result.numbers, evaluateRecords(noise, HELLO, records).numbers); // not the full run's
});

// ---- the sentences ----

test("numbers are written as claims.format_number writes them", () => {
  const cases = { 0.12345: "0.123", 3.0566: "3.06", 17.94: "17.9", 123.4: "123", "-0.0212": "-0.021", 5.26e-8: "0", 2: "2", 18.255: "18.3", 3.1011: "3.1", 0.000124: "0" };
  for (const [x, text] of Object.entries(cases)) assert.equal(formatClaimNumber(Number(x)), text, x);
  assert.equal(formatClaimNumber(Number.POSITIVE_INFINITY), "∞");
  // Exact halves go to the even digit, as Python's round: not toFixed's larger one.
  assert.equal(formatClaimNumber(0.0625), "0.062");
  assert.equal(formatClaimNumber(1.125), "1.12");
  assert.equal(formatClaimNumber(100.5), "100");
  assert.equal(formatClaimNumber(101.5), "102");
});

test("a judged claim's sentence has its numbers filled in; an undecided one has none", () => {
  const c = claim("unit_drift_ratio", 2, { ...SHIFT, from_step: 0, to_step: 100 });
  assert.equal(claimSentence(c, evaluateRecords(c, HELLO, driftFrames())), "holds 8");
  assert.equal(claimSentence({ ...c, threshold: 9 }, evaluateRecords(c, HELLO, driftFrames())), "holds 8"); // the result decides
  assert.equal(claimSentence(c, { holds: false, numbers: { value: 1.5 } }), "fails 1.5");
  assert.equal(claimSentence(c, { holds: null, numbers: {} }), null);
  const lesson = RULES.lessons.find((l) => l.id === "internal-covariate-shift");
  const ko = claimSentence(lesson.claims[0], { holds: true, numbers: { ratio: 3.1011 } }, "ko");
  assert.ok(ko.includes("3.1배"), ko);
});

// ---- the lesson panel's pure parts ----

test("a lesson's schedule is listed with the value each change replaces", () => {
  const byId = Object.fromEntries(RULES.lessons.map((l) => [l.id, l]));
  assert.deepEqual(scheduledChanges(byId["mini-batch-sgd"].values, RULES.defaults), [
    { step: 1500, changes: [{ field: "batch_size", from: 60, to: 4 }] },
  ]);
  assert.deepEqual(scheduledChanges(byId["small-batches"].values, RULES.defaults), [
    { step: 200, changes: [{ field: "batch_size", from: 1, to: 4 }] },
    { step: 1500, changes: [{ field: "batch_size", from: 4, to: 256 }] },
  ]);
  assert.deepEqual(scheduledChanges(byId["train-vs-inference"].values, RULES.defaults), [
    { step: 1000, changes: [{ field: "bn_momentum", from: RULES.defaults.bn_momentum, to: 0.9 }] },
  ]);
  assert.deepEqual(scheduledChanges({ schedule: [{ step: 9, lr: 0.1, bn_momentum: null }, { step: 3, lr: 0.2 }] }, { lr: 0.5, bn_momentum: 0.1 }), [
    { step: 3, changes: [{ field: "lr", from: 0.5, to: 0.2 }] },
    { step: 9, changes: [{ field: "lr", from: 0.2, to: 0.1 }, { field: "bn_momentum", from: 0.1, to: null }] },
  ]);
  assert.deepEqual(scheduledChanges(byId["internal-covariate-shift"].values, RULES.defaults), []);
});

test("every chart a lesson points at has a place on the page", () => {
  for (const lesson of RULES.lessons) {
    for (const chart of lesson.watch.charts) assert.ok(watchTarget(chart, lesson.watch.layer), `${lesson.id}: ${chart}`);
  }
  assert.equal(watchTarget("bn", 2), "#layer-3 .card.bn");
  assert.equal(watchTarget("loss", 0), "#overview .card.loss");
  assert.equal(watchTarget("inference", 0), "#overview .card.accuracy");
  assert.equal(watchTarget("nowhere", 0), null);
});

test("the lesson of a run is remembered in the session, and bad storage forgets quietly", () => {
  const saved = new Map();
  const storage = { getItem: (k) => saved.get(k) ?? null, setItem: (k, v) => saved.set(k, String(v)) };
  const runs = lessonRunStore(storage);
  runs.set("run-a", "small-batches");
  runs.set("run-b", "alternatives");
  assert.equal(lessonRunStore(storage).get("run-a"), "small-batches");
  assert.equal(runs.get("run-b"), "alternatives");
  assert.equal(runs.get("run-c"), null);
  saved.set("covshift.lessonRuns", "{not json");
  assert.equal(runs.get("run-a"), null);
  const broken = lessonRunStore({ getItem: () => { throw new Error("denied"); }, setItem: () => { throw new Error("denied"); } });
  broken.set("run-a", "x");
  assert.equal(broken.get("run-a"), null);
  assert.equal(lessonRunStore(undefined).get("run-a"), null);
});
