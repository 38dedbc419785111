// applyMessage: the pure reducer from the run's message stream to page state.
import assert from "node:assert/strict";
import { test } from "node:test";

import { applyMessage, edgesOf, batchStatVariants, columnsIn, normalizedVariants, RECENT_STEPS, testsIn, windowStart, columnsOf, createSeries, createState, pushSeries, seriesItems, testsOf } from "../../frontend/js/state.js";
import { event, frame, hello } from "./fixtures.mjs";

function run(messages, options) {
  return messages.reduce(applyMessage, createState(options));
}

test("hello sets the run's layout and starts from an empty history", () => {
  const state = run([hello({ depth: 3 })]);
  assert.deepEqual(state.variants, ["plain", "bn"]);
  assert.equal(state.depth, 3);
  assert.deepEqual(state.settings, { lr: 0.5, batch_size: 60, bn_momentum: 0.1 });
  assert.equal(columnsOf(state).length, 0);
  assert.deepEqual(normalizedVariants(state), ["bn"]);
});

test("a stored run with the older tap names (bn_xhat, bn_out) reads as today's", () => {
  const old = hello({ depth: 1 });
  old.variants.bn.taps = ["linear_out", "bn_xhat", "bn_out", "act_input", "act_output"];
  old.edges = old.edges.map(({ norm_xhat, norm_out, ...rest }) => ({ ...rest, bn_xhat: norm_xhat, bn_out: norm_out }));
  const oldFrame = frame(0);
  for (const layer of oldFrame.variants.bn.layers) {
    layer.taps = { ...layer.taps, bn_xhat: layer.taps.act_input };
  }
  const state = run([old, oldFrame]);
  assert.deepEqual(normalizedVariants(state), ["bn"]);
  assert.ok("norm_xhat" in state.hello.edges[0] && !("bn_xhat" in state.hello.edges[0]));
  const taps = columnsOf(state)[0].variants.bn.layers[0].taps;
  assert.ok("norm_xhat" in taps && !("bn_xhat" in taps));
  // Today's runs pass through untouched.
  const fresh = run([hello({ depth: 1 }), frame(0)]);
  assert.equal(fresh.legacyTaps, false);
});

test("batch-statistics variants come from the hello, not from a list in the page", () => {
  const state = run([hello({ variants: ["plain", "bn", "bn_after"] })]);
  assert.deepEqual(batchStatVariants(state), ["bn", "bn_after"]);
  const ln = hello();
  ln.variants.bn.batch_stats = false; // e.g. a LayerNorm-only run: no BN momentum to change
  assert.deepEqual(batchStatVariants(run([ln])), []);
});

test("the polled run info gives the state until the stream says it; an ended run's is the server's", () => {
  const polled = run([{ type: "runinfo", run: { state: "paused" } }]);
  assert.equal(polled.runState, "paused");
  const streamed = run([hello(), frame(0), { type: "runinfo", run: { state: "paused" } }]);
  assert.equal(streamed.runState, "running");
  // A stored run replayed from a file without a final state event reads "running" from its
  // frames; the server says it ended (or is damaged), and that stands.
  for (const ended of ["stopped", "finished", "failed", "damaged"]) {
    const replayed = run([hello(), frame(0), { type: "runinfo", run: { state: ended } }]);
    assert.equal(replayed.runState, ended);
  }
});

test("one time window for every step axis: recent steps, since the last change, or all", () => {
  const steps = [0, 500, 1000, 1500, 2000, 2500, 3000];
  const state = run([hello(), ...steps.map((s) => frame(s, { test: s % 1000 === 0 })), event(1200, "lr", { value: 0.1, previous: 0.5 }), event(1300, "state", { state: "paused" })]);
  const at = (window) => columnsIn(state, { window }).map((c) => c.step);
  assert.equal(RECENT_STEPS, 2000);
  assert.deepEqual(at("recent"), [1000, 1500, 2000, 2500, 3000]);
  assert.deepEqual(at("change"), [1500, 2000, 2500, 3000], "since the lr change at 1200 (a state event is no change)");
  assert.deepEqual(at("all"), steps);
  assert.deepEqual(testsIn(state, { window: "recent" }).map((p) => p.step), [1000, 2000, 3000]);
  const unchanged = run([hello(), frame(0), frame(10)]);
  assert.equal(windowStart(unchanged, "change"), Number.NEGATIVE_INFINITY, "no change yet: the whole run");
});

test("a second hello (reconnect or new run) resets frames and events", () => {
  const state = run([hello(), frame(0), frame(5), event(5, "lr", { value: 0.1, previous: 0.5 }), hello({ lr: 0.2 })]);
  assert.equal(columnsOf(state).length, 0);
  assert.equal(state.events.length, 0);
  assert.equal(state.step, null);
  assert.equal(state.settings.lr, 0.2);
});

test("frames append in order and set the current step, epoch and newest column", () => {
  const state = run([hello(), frame(0, { test: true }), frame(5), frame(10)]);
  const columns = columnsOf(state);
  assert.deepEqual(columns.map((c) => c.step), [0, 5, 10]);
  assert.equal(state.step, 10);
  assert.equal(state.latest.step, 10);
  assert.equal(state.frames, 3);
  assert.equal(state.runState, "running");
  assert.deepEqual(testsOf(state).map((p) => p.step), [0]);
  assert.deepEqual(testsOf(state)[0].variants.bn, { loss: 0.69, acc: 0.55 });
});

test("test points keep train-mode and population accuracy when a frame carries them", () => {
  const measured = frame(0, { test: true });
  measured.variants.bn.test = { ...measured.variants.bn.test, acc_train_mode: 0.4, acc_population: 0.56, acc_cumulative: 0.57 };
  const state = run([hello(), measured]);
  assert.deepEqual(testsOf(state)[0].variants.bn, { loss: 0.69, acc: 0.55, acc_train_mode: 0.4, acc_population: 0.56, acc_cumulative: 0.57 });
  assert.equal("acc_train_mode" in testsOf(state)[0].variants.plain, false);
});

test("frames before any hello are ignored (nothing to interpret them with)", () => {
  const state = run([frame(0)]);
  assert.equal(columnsOf(state).length, 0);
  assert.equal(state.step, null);
});

test("bounded history keeps the first and the newest frame, evenly spaced", () => {
  const capacity = 8;
  const steps = Array.from({ length: 101 }, (_, i) => i * 5);
  const state = run([hello(), ...steps.map((s) => frame(s))], { capacity });
  const kept = columnsOf(state).map((c) => c.step);
  assert.ok(kept.length <= capacity, `kept ${kept.length} > ${capacity}`);
  assert.equal(kept[0], 0);
  assert.equal(kept[kept.length - 1], 500);
  // On-stride columns are evenly spaced; only the newest may be off the stride.
  const gaps = new Set(kept.slice(1, -1).map((s, i) => s - kept[i]));
  assert.equal(gaps.size, 1, `uneven gaps ${[...gaps]}`);
  assert.deepEqual(kept, [...kept].sort((a, b) => a - b));
});

test("the series rule matches the server's History (stride doubling)", () => {
  // Same numbers as server/covshift/history.py would keep for capacity 4.
  const series = createSeries(4);
  for (let i = 0; i < 10; i += 1) pushSeries(series, i);
  assert.deepEqual(seriesItems(series), [0, 4, 8, 9]);
  pushSeries(series, 10);
  assert.deepEqual(seriesItems(series), [0, 4, 8, 10]);
  assert.throws(() => createSeries(1));
});

test("series items come back as a new array each time (Plotly.react needs new arrays)", () => {
  const state = run([hello(), frame(0)]);
  assert.notEqual(columnsOf(state), columnsOf(state));
});

test("events are recorded, and setting events update what the controls show", () => {
  const state = run([
    hello(),
    frame(0),
    event(3, "lr", { value: 0.05, previous: 0.5 }),
    event(3, "batch_size", { value: 8, previous: 60 }),
    event(4, "bn_momentum", { value: null, previous: 0.1 }),
  ]);
  assert.deepEqual(state.events.map((e) => e.kind), ["lr", "batch_size", "bn_momentum"]);
  assert.deepEqual(state.events[0], { step: 3, kind: "lr", value: 0.05, previous: 0.5 });
  assert.deepEqual(state.settings, { lr: 0.05, batch_size: 8, bn_momentum: null });
});

test("events beyond the limit drop the oldest", () => {
  const events = Array.from({ length: 7 }, (_, i) => event(i, "lr", { value: i + 1, previous: i }));
  const state = run([hello(), ...events], { maxEvents: 5 });
  assert.deepEqual(state.events.map((e) => e.step), [2, 3, 4, 5, 6]);
});

test("state events set the run state; failures keep their message", () => {
  let state = run([hello(), event(0, "state", { state: "running" }), event(9, "state", { state: "paused" })]);
  assert.equal(state.runState, "paused");
  state = applyMessage(state, event(9, "state", { state: "failed", message: "worker died" }));
  assert.equal(state.runState, "failed");
  assert.equal(state.runMessage, "worker died");
});

test("a skipped event keeps its reason until the variants train again", () => {
  const reason = "BatchNorm cannot train on batch size 1: ...";
  let state = run([hello(), event(0, "skipped", { variants: ["bn"], reason })]);
  assert.deepEqual(state.skipped, { step: 0, variants: ["bn"], reason });
  const skippedFrame = frame(0);
  skippedFrame.variants.bn = { status: "skipped", loss: null, acc: null };
  state = applyMessage(state, skippedFrame);
  assert.ok(state.skipped, "still skipped while the frame says so");
  state = applyMessage(state, frame(5));
  assert.equal(state.skipped, null);
});

test("non-finite values arrive as null with a flag, and stay null (never NaN or 0)", () => {
  const bad = frame(8);
  bad.variants.plain.loss = null;
  bad.variants.plain.layers[0].taps.act_input.percentiles[4] = null;
  bad.nonfinite = { "/variants/plain/loss": "nan", "/variants/plain/layers/0/taps/act_input/percentiles/4": "inf" };
  const state = run([hello(), frame(0), bad]);
  const latest = columnsOf(state).at(-1);
  assert.equal(latest.variants.plain.loss, null);
  assert.deepEqual(latest.nonfinite, bad.nonfinite);
  assert.equal(state.nonfiniteFrames, 1);
});

test("a diverged variant is remembered from its event or its frame", () => {
  let state = run([hello(), event(8, "diverged", { variant: "plain", reason: "loss became non-finite" })]);
  assert.deepEqual(state.diverged.plain, { step: 8, reason: "loss became non-finite" });
  const diverged = frame(10);
  diverged.variants.bn = { status: "diverged", diverged_at: 9, loss: null, acc: null };
  state = applyMessage(state, diverged);
  assert.equal(state.diverged.bn.step, 9);
});

test("acks update the run and its settings; errors are kept for the controls", () => {
  let state = run([hello()]);
  const runInfo = { id: "abc", state: "paused", lr: 0.1, batch_size: 16, bn_momentum: null, step: 40 };
  state = applyMessage(state, { v: 1, type: "ack", id: 3, run: runInfo });
  assert.equal(state.runState, "paused");
  assert.deepEqual(state.settings, { lr: 0.1, batch_size: 16, bn_momentum: null });
  state = applyMessage(state, { v: 1, type: "error", id: 4, message: "lr: Input should be less than or equal to 10" });
  assert.deepEqual(state.lastError, { id: 4, message: "lr: Input should be less than or equal to 10" });
});

test("unknown message types and malformed input are ignored", () => {
  const before = run([hello(), frame(0)]);
  const revision = before.revision;
  let state = applyMessage(before, { v: 1, type: "heartbeat", step: 99 });
  state = applyMessage(state, { v: 2, type: "something-new" });
  state = applyMessage(state, null);
  state = applyMessage(state, "frame");
  state = applyMessage(state, { type: "toString" });
  assert.equal(state, before);
  assert.equal(state.revision, revision);
  assert.equal(state.step, 0);
});

test("every change bumps the revision (charts redraw on it)", () => {
  const a = run([hello()]);
  const r0 = a.revision;
  applyMessage(a, frame(0));
  assert.ok(a.revision > r0);
});

test("gradient ICS is kept only from the frames that carry it, per variant and layer", async () => {
  const { icsOf } = await import("../../frontend/js/state.js");
  const none = run([hello(), frame(0), frame(5)]);
  assert.deepEqual(icsOf(none), []);
  const state = run([hello(), frame(0, { ics: true }), frame(5), frame(10, { ics: true, variants: ["bn"] })]);
  const points = icsOf(state);
  assert.deepEqual(points.map((p) => p.step), [0, 10]);
  assert.equal(points[0].variants.plain.length, 3); // 2 hidden layers + the output layer
  assert.deepEqual(points[0].variants.plain[1], { grad_diff: 0.1, grad_cos: 0.9, grad_norm: 0.2 });
  assert.equal(points[1].variants.plain, undefined);
  // a hello starts over
  assert.deepEqual(icsOf(applyMessage(state, hello())), []);
});

test("a watched run's models keep their own edges and layer counts", () => {
  const hello = {
    type: "hello",
    config: { source: "watch", variants: ["bn", "plain"] },
    variants: { bn: { taps: ["linear_out", "norm_xhat"] }, plain: { taps: ["act_input"] } },
    edges: [],
    variant_edges: {
      bn: [{ linear_out: [0, 1, 2] }, { linear_out: [0, 2, 4] }, { linear_out: [0, 3, 6] }],
      plain: [{ act_input: [-1, 0, 1] }],
    },
  };
  const state = applyMessage(createState(), hello);
  assert.equal(state.depth, 3);
  assert.deepEqual(edgesOf(state, "bn", 1, "linear_out"), [0, 2, 4]);
  assert.deepEqual(edgesOf(state, "plain", 0, "act_input"), [-1, 0, 1]);
  assert.deepEqual(edgesOf(state, "plain", 2, "act_input"), []);
  // A built-in run: one set of edges per layer, shared by every variant.
  const shared = applyMessage(createState(), { type: "hello", config: {}, variants: { plain: {}, bn: {} }, edges: [{ act_input: [0, 1] }] });
  assert.equal(shared.depth, 1);
  assert.deepEqual(edgesOf(shared, "bn", 0, "act_input"), [0, 1]);
});

test("a layer's channels come from its description, else the MLP's width", async () => {
  const { layerChannels } = await import("../../frontend/js/state.js");
  const cnn = { config: { width: 100 }, variants: { bn: { layers: [{ channels: 16 }, { channels: 32 }] } } };
  assert.equal(layerChannels(cnn, "bn", 1), 32);
  assert.equal(layerChannels(cnn, "plain", 0), 100);
  assert.equal(layerChannels({ config: {} }, "bn", 0), 0);
});

test("a history message replaces frames, events and what they decided; hello, run and settings stay", () => {
  const diverging = frame(10);
  diverging.variants.plain.status = "diverged";
  const before = run([
    hello(),
    { type: "ack", id: 1, run: { id: "r1", state: "running", lr: 0.3 } },
    frame(0, { test: true, ics: true }),
    event(5, "skipped", { variants: ["bn"], reason: "batch size 1" }),
    diverging,
    { type: "error", id: 2, message: "no" },
  ]);
  assert.deepEqual(Object.keys(before.diverged), ["plain"]);
  const revision = before.revision;
  const helloObject = before.hello;
  // After a view change the server sends the history again, projected onto the new view.
  const messages = [frame(0), frame(20), event(20, "lr", { value: 0.2, previous: 0.3 })];
  const after = applyMessage(before, { v: 2, type: "history", messages });
  assert.deepEqual(columnsOf(after).map((c) => c.step), [0, 20]);
  assert.deepEqual(testsOf(after), []);
  assert.equal(after.ics.seen, 0);
  assert.deepEqual(after.events.map((e) => e.kind), ["lr"]);
  assert.deepEqual([after.skipped, after.diverged, after.frames, after.step], [null, {}, 2, 20]);
  assert.equal(after.hello, helloObject);
  assert.equal(after.run.id, "r1");
  assert.equal(after.settings.lr, 0.2, "the history's own lr event, on top of the kept settings");
  assert.equal(after.lastError.message, "no");
  assert.equal(after.revision, revision + 1, "one redraw for the whole history");
  // The same as those messages arriving one by one after the hello.
  const direct = run([hello(), { type: "ack", id: 1, run: { id: "r1", state: "running", lr: 0.3 } }, ...messages, { type: "error", id: 2, message: "no" }]);
  assert.deepEqual({ ...after, revision: 0 }, { ...direct, revision: 0 });
});

test("a history's frames without their own version are read as the history's version", () => {
  const compact = frame(0, { depth: 1 });
  delete compact.v;
  compact.variants.plain.layers[0].taps = { linear_out: { counts: [4], first: 3 }, act_input: "linear_out", act_output: { counts: [1, 1] } };
  const state = run([hello({ depth: 1 }), { v: 2, type: "history", messages: [compact] }]);
  const taps = columnsOf(state)[0].variants.plain.layers[0].taps;
  assert.deepEqual(taps.act_input.counts, [0, 0, 0, 4]);
  assert.deepEqual(taps.act_output, { counts: [1, 1, 0, 0], underflow: 0, overflow: 0, nonfinite: 0 });
  // An empty history clears what was there, and one before any hello keeps nothing.
  assert.equal(columnsOf(run([hello(), frame(0), { v: 2, type: "history", messages: [] }])).length, 0);
  assert.equal(columnsOf(run([{ v: 2, type: "history", messages: [frame(0)] }])).length, 0);
});
