// Control validation: the bounds mirrored from RunConfig, refused in place with a reason.
import assert from "node:assert/strict";
import { test } from "node:test";

import { setRules } from "../../frontend/js/rules.js";
import { RULES } from "./rules.mjs";
import { boundOf, boundsText, formatNumber, fromSlider, parseNumber, skippedAt, toSlider, validate } from "../../frontend/js/bounds.js";

test("values inside the bounds pass, parsed as numbers", () => {
  assert.deepEqual(validate("lr", "0.05"), { ok: true, value: 0.05 });
  assert.deepEqual(validate("lr", "1e-3"), { ok: true, value: 0.001 });
  assert.deepEqual(validate("lr", " 10 "), { ok: true, value: 10 });
  assert.deepEqual(validate("batch_size", "4096"), { ok: true, value: 4096 });
  assert.deepEqual(validate("seed", String(2 ** 31 - 1)), { ok: true, value: 2 ** 31 - 1 });
  assert.deepEqual(validate("bn_momentum", "1"), { ok: true, value: 1 });
});

test("one past every bound is refused with the reason", () => {
  const cases = [
    ["lr", "0", "err.gt"],
    ["lr", "10.0001", "err.le"],
    ["batch_size", "0", "err.ge"],
    ["batch_size", "4097", "err.le"],
    ["bn_momentum", "0", "err.gt"],
    ["bn_momentum", "1.01", "err.le"],
    ["depth", "0", "err.ge"],
    ["depth", "9", "err.le"],
    ["width", "1025", "err.le"],
    ["init_std", "0", "err.gt"],
    ["init_std", "10.5", "err.le"],
    ["steps", "10000001", "err.le"],
    ["probe_every", "100001", "err.le"],
    ["bins", "7", "err.ge"],
    ["bins", "513", "err.le"],
    ["seed", "-1", "err.ge"],
    ["seed", String(2 ** 31), "err.le"],
    ["sgd_momentum", "1", "err.lt"],
  ];
  for (const [field, raw, key] of cases) {
    const result = validate(field, raw);
    assert.equal(result.ok, false, `${field}=${raw} should be refused`);
    assert.equal(result.key, key, `${field}=${raw}`);
    assert.equal(result.params.bounds, boundsText(field));
  }
});

test("integer fields refuse fractions; every field refuses text, blanks and infinities", () => {
  assert.equal(validate("batch_size", "1.5").key, "err.integer");
  assert.equal(validate("depth", "2.0").ok, true);
  assert.equal(validate("lr", "abc").key, "err.notNumber");
  assert.equal(validate("lr", "Infinity").key, "err.notNumber");
  assert.equal(validate("lr", "NaN").key, "err.notNumber");
  assert.equal(validate("lr", "").key, "err.empty");
  assert.equal(validate("lr", "0x10").key, "err.notNumber");
  assert.equal(validate("lr", Number.POSITIVE_INFINITY).key, "err.notNumber");
});

test("BN momentum may be blank: null means the cumulative average", () => {
  assert.deepEqual(validate("bn_momentum", ""), { ok: true, value: null });
  assert.deepEqual(validate("bn_momentum", null), { ok: true, value: null });
});

test("batch size is checked against the run's data and variants", () => {
  assert.equal(validate("batch_size", "2000", { nTrain: 1600 }).key, "err.batchData");
  assert.equal(validate("batch_size", "1", { variants: ["bn"] }).key, "err.batchOneBnOnly");
  assert.equal(validate("batch_size", "1", { variants: ["bn", "bn_after"] }).key, "err.batchOneBnOnly");
  assert.deepEqual(validate("batch_size", "1", { variants: ["plain", "bn"] }), { ok: true, value: 1 });
  assert.deepEqual(skippedAt(1, ["plain", "bn", "bn_after"]), ["bn", "bn_after"]);
  assert.deepEqual(skippedAt(2, ["plain", "bn"]), []);
});

test("unknown fields are refused, not passed through", () => {
  assert.equal(validate("nope", "1").key, "err.unknownField");
});

test("bounds read as interval notation", () => {
  assert.equal(boundsText("lr"), "(0, 10]");
  assert.equal(boundsText("batch_size"), "[1, 4096]");
  assert.equal(boundsText("sgd_momentum"), "[0, 1)");
});

test("log sliders round-trip and stay inside their range", () => {
  for (const value of [1e-4, 0.001, 0.05, 0.5, 1, 10]) {
    const back = fromSlider("lr", toSlider("lr", value));
    assert.ok(Math.abs(Math.log(back / value)) < 0.02, `${value} -> ${back}`);
  }
  for (const value of [1, 2, 8, 60, 512, 4096]) {
    assert.equal(fromSlider("batch_size", toSlider("batch_size", value)), value);
  }
  assert.equal(toSlider("lr", 1e-9), 0);
  assert.equal(toSlider("lr", 99), 1000);
  assert.equal(fromSlider("lr", 1000), 10);
  assert.ok(Number.isInteger(fromSlider("batch_size", 333)));
  assert.ok(boundOf("lr").log && boundOf("batch_size").log);
});

test("numbers are parsed strictly and formatted briefly", () => {
  assert.equal(parseNumber("1,000"), 1000);
  assert.equal(parseNumber(".5"), 0.5);
  assert.equal(parseNumber("5."), 5);
  assert.equal(parseNumber("1e"), null);
  assert.equal(parseNumber(""), null);
  assert.equal(formatNumber(0.0001), "1e-4");
  assert.equal(formatNumber(0.05), "0.05");
  assert.equal(formatNumber(4096), "4096");
  assert.equal(formatNumber(0.123456), "0.1235");
  assert.equal(formatNumber(null), "—");
});

test("a bound changed on the server is the bound the page enforces", () => {
  assert.equal(validate("batch_size", "200").ok, true);
  setRules({ ...RULES, bounds: { ...RULES.bounds, batch_size: { ...RULES.bounds.batch_size, max: 100 } } });
  try {
    const result = validate("batch_size", "200");
    assert.equal(result.ok, false);
    assert.equal(result.key, "err.le");
    assert.equal(boundsText("batch_size"), "[1, 100]");
  } finally {
    setRules(RULES);
  }
});

test("batch size 1 is refused only when every variant uses batch statistics (from the registry)", () => {
  assert.equal(validate("batch_size", "1", { variants: ["bn", "ghost_bn"] }).key, "err.batchOneBnOnly");
  assert.equal(validate("batch_size", "1", { variants: ["bn", "rms"] }).ok, true);
  assert.deepEqual(skippedAt(1, ["plain", "bn", "rms", "brn"]), ["bn", "brn"]);
});
