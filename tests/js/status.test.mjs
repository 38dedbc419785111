// Status bar arithmetic and banners: rates over a window, and what the page tells a person.
import assert from "node:assert/strict";
import { test } from "node:test";

import { applyMessage, createState } from "../../frontend/js/state.js";
import { bannersFor, RateMeter, stepsPerSecond } from "../../frontend/js/status.js";
import { event, frame, hello } from "./fixtures.mjs";

test("frames and steps per second over a sliding window", () => {
  const meter = new RateMeter(2000);
  for (let i = 0; i <= 20; i += 1) meter.add(i * 100, i * 25); // 10 frames/s, 250 steps/s
  assert.equal(meter.rate(2000), 10.5); // 21 samples in the 2 s window
  assert.equal(meter.stepRate(2000), 250);
  assert.equal(meter.rate(10_000), 0); // nothing recent
  assert.equal(meter.stepRate(10_000), null);
  meter.add(20_000, 5);
  assert.equal(meter.stepRate(20_000), null, "one sample is no rate");
});

test("steps per second from two readings of the server's counter", () => {
  assert.equal(stepsPerSecond({ step: 100, time: 0 }, { step: 1100, time: 2000 }), 500);
  assert.equal(stepsPerSecond(null, { step: 1, time: 1 }), null);
  assert.equal(stepsPerSecond({ step: 100, time: 0 }, { step: 50, time: 2000 }), null); // a new run
});

test("banners explain skipped and diverged variants, ended runs and lost connections", () => {
  let state = [hello(), frame(0)].reduce(applyMessage, createState());
  assert.deepEqual(bannersFor(state, { connection: { state: "open" } }), []);
  state = applyMessage(state, event(5, "skipped", { variants: ["bn"], reason: "BatchNorm cannot train on batch size 1: because" }));
  state = applyMessage(state, event(9, "diverged", { variant: "plain", reason: "loss became non-finite" }));
  state = applyMessage(state, event(9, "state", { state: "failed", message: "worker died" }));
  const banners = bannersFor(state, { connection: { state: "waiting" }, everOpen: true });
  assert.deepEqual(banners.map((b) => b.kind), ["warn", "error", "warn", "error"]);
  assert.match(banners[1].text, /worker died/);
  assert.match(banners[2].text, /BatchNorm cannot train on batch size 1/);
  assert.match(banners[3].text, /step 9/);
  const waiting = bannersFor(createState(), { connection: { state: "open" } });
  assert.match(waiting[0].text, /first data/);
});

test("a run the server lists damaged says why, instead of waiting for data that will not come", () => {
  const runInfo = { state: "damaged", error: "state.json: must be a JSON object, not null" };
  const banners = bannersFor(createState(), { connection: { state: "open" }, runInfo });
  assert.deepEqual(banners.map((b) => b.kind), ["error"]);
  assert.match(banners[0].text, /damaged.*state\.json: must be a JSON object, not null/);
});
