// The runs list tells runs apart: current learning rate, batch size and start time.
import assert from "node:assert/strict";
import { test } from "node:test";

import "./rules.mjs";
import { runSettings } from "../../frontend/js/runs.js";

test("a run's label carries its learning rate, batch size and start time", () => {
  const created = new Date(2026, 11, 2, 14, 5);
  const now = new Date(2026, 11, 2, 18, 0);
  const text = runSettings({ lr: 0.05, batch_size: 16, created: created.toISOString() }, now);
  assert.equal(text, "lr 0.05 · batch 16 · started 14:05");
  const yesterday = runSettings({ lr: 2, batch_size: 60, created: created.toISOString() }, new Date(2026, 11, 3, 9, 0));
  assert.equal(yesterday, "lr 2 · batch 60 · started 2026-12-02 14:05");
});
