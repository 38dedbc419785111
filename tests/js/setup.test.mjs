/** The new-run form's pure parts: preset values and the config it POSTs. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { buildConfig, presetValues } from "../../frontend/js/setup.js";
import { RULES } from "./rules.mjs";

test("a preset fills the form over the defaults and is named in the values", () => {
  const values = presetValues("noisy-bn");
  assert.deepEqual(values.variants, ["plain", "bn", "noisy_bn"]);
  assert.equal(values.activation, "sigmoid");
  assert.equal(values.preset, "noisy-bn");
  assert.equal(values.seed, RULES.defaults.seed);
  assert.equal(presetValues("paper-fig1").steps, 50000);
  assert.deepEqual(presetValues("").preset, "");
  assert.deepEqual(Object.keys(RULES.presets), ["paper-fig1", "noisy-bn"]); // no sweeps: CLI only
});

test("the config names the preset only when one is chosen", () => {
  const raw = Object.fromEntries(Object.entries(presetValues("paper-fig1")).map(([k, v]) => [k, Array.isArray(v) ? v : String(v)]));
  const { config } = buildConfig(raw, { cumulative: false });
  assert.equal(config.preset, "paper-fig1");
  assert.equal(config.batch_size, 60);
  const plain = buildConfig({ ...raw, preset: "" }, { cumulative: false }).config;
  assert.equal("preset" in plain, false);
});

test("every variant of the server's registry is offered, in its order", () => {
  assert.deepEqual(RULES.choices.variants, Object.keys(RULES.variants));
  assert.ok(RULES.choices.variants.includes("rms"));
});

test("choosing no preset puts back the server's defaults, not the last preset's values", () => {
  const afterPreset = presetValues("noisy-bn");
  const none = presetValues("");
  assert.deepEqual(none.variants, RULES.defaults.variants);
  assert.notDeepEqual(afterPreset.variants, none.variants);
  assert.equal(none.preset, "");
});

test("a restart takes the run's config with today's settings and no schedule", async () => {
  const { restartConfig } = await import("../../frontend/js/controls.js");
  const config = { dataset: "digits", lr: 0.5, batch_size: 60, bn_momentum: 0.1, seed: 3, schedule: [{ step: 10, batch_size: 1 }] };
  const next = restartConfig(config, { lr: 2, batch_size: 1, bn_momentum: null });
  assert.deepEqual(next, { dataset: "digits", lr: 2, batch_size: 1, bn_momentum: null, seed: 3 });
  assert.deepEqual(config.schedule, [{ step: 10, batch_size: 1 }]); // the run's own config untouched
});
