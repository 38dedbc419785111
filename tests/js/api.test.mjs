// Reading the server's error answers into messages next to the fields they name.
import assert from "node:assert/strict";
import { test } from "node:test";

import { exportUrl, fieldErrors, reportUrl } from "../../frontend/js/api.js";

test("FastAPI's validation list maps to fields", () => {
  const body = { detail: [{ loc: ["body", "lr"], msg: "Input should be less than or equal to 10" }, { loc: ["body"], msg: "bad" }] };
  const errors = fieldErrors(body, ["lr", "depth"]);
  assert.deepEqual(errors.lr, ["Input should be less than or equal to 10"]);
  assert.deepEqual(errors.general, ["bad"]);
});

test("a 'field: reason; field: reason' string maps to fields", () => {
  const body = { detail: "depth: Input should be less than or equal to 8; width: Input should be greater than or equal to 1" };
  const errors = fieldErrors(body, ["depth", "width"]);
  assert.deepEqual(errors.depth, ["Input should be less than or equal to 8"]);
  assert.deepEqual(errors.width, ["Input should be greater than or equal to 1"]);
  assert.deepEqual(errors.general, []);
});

test("problems naming no known field stay general", () => {
  assert.deepEqual(fieldErrors({ detail: "variants.0: Input should be 'plain'" }, ["variants"]).variants, ["Input should be 'plain'"]);
  assert.deepEqual(fieldErrors({ detail: "max_runs reached" }, ["lr"]).general, ["max_runs reached"]);
  assert.deepEqual(fieldErrors({ detail: "data_dir: no" }, ["lr"]).general, ["data_dir: no"]);
  assert.deepEqual(fieldErrors(null).general, []);
});

test("export links name the run and the format", () => {
  assert.equal(exportUrl("a/b", "csv"), "/api/runs/a%2Fb/export?format=csv");
  assert.equal(reportUrl("a/b"), "/api/runs/a%2Fb/report");
  assert.equal(reportUrl("a/b", "ko"), "/api/runs/a%2Fb/report?lang=ko");
});
