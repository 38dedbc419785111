// The pure parts of the charts: heatmap pixels, panel layout, drift scaling, tick choice.
import assert from "node:assert/strict";
import { test } from "node:test";

import { bandOutline, panelDomains } from "../../frontend/js/charts/bands.js";
import { relativeDrift } from "../../frontend/js/charts/drift.js";
import { colormap, paintColumns } from "../../frontend/js/charts/heatmap.js";
import { logTicks } from "../../frontend/js/charts/loss.js";
import { eventShapes, withAlpha } from "../../frontend/js/charts/plot.js";

const pixel = (pixels, width, col, row) => Array.from(pixels.slice((row * width + col) * 4, (row * width + col) * 4 + 4));

test("heatmap columns: high values on top, each column scaled to its fullest bin, outside rows red", () => {
  const lut = colormap();
  const stats = [
    { counts: [0, 4, 1], underflow: 0, overflow: 0, nonfinite: 0 },
    null, // a variant that did not train at this frame
    { counts: [2, 0, 0], underflow: 0, overflow: 2, nonfinite: 0 },
  ];
  const width = stats.length;
  const pixels = new Uint8ClampedArray(width * 5 * 4);
  paintColumns(pixels, stats, 0, 2); // 3 bins shown + overflow row + underflow row
  const top = Array.from(lut.slice(255 * 3, 255 * 3 + 3));
  const bottom = Array.from(lut.slice(0, 3));
  assert.deepEqual(pixel(pixels, width, 0, 2).slice(0, 3), top, "bin 1 is the fullest");
  assert.deepEqual(pixel(pixels, width, 0, 1).slice(0, 3), Array.from(lut.slice(128 * 3, 128 * 3 + 3)), "sqrt(1/4) = half");
  assert.deepEqual(pixel(pixels, width, 0, 3).slice(0, 3), bottom, "bin 0 is empty");
  assert.deepEqual(pixel(pixels, width, 1, 2), [245, 245, 245, 255], "no data: light grey");
  assert.deepEqual(pixel(pixels, width, 2, 0).slice(0, 3), [228, 26, 28], "half the batch above the range: full red");
  assert.deepEqual(pixel(pixels, width, 2, 4).slice(0, 3), [250, 250, 250], "nothing below the range");
});

test("a cropped heatmap shows only bins lo..hi", () => {
  const pixels = new Uint8ClampedArray(1 * 4 * 4);
  paintColumns(pixels, [{ counts: [9, 0, 3, 0], underflow: 0, overflow: 0, nonfinite: 0 }], 1, 2);
  const lut = colormap();
  const level = Math.round(255 * Math.sqrt(3 / 9)); // scaled by the column's fullest bin, shown or not
  assert.deepEqual(pixel(pixels, 1, 0, 1).slice(0, 3), Array.from(lut.slice(level * 3, level * 3 + 3)), "bin 2 on top");
  assert.deepEqual(pixel(pixels, 1, 0, 2).slice(0, 3), Array.from(lut.slice(0, 3)), "bin 1 below it, empty");
});

test("panels share the width with gaps", () => {
  const [a, b] = panelDomains(2);
  assert.equal(a[0], 0);
  assert.ok(Math.abs(b[1] - 1) < 1e-12);
  assert.ok(b[0] > a[1]);
});

test("drift on fixed data: the per-unit median scaled by the spread, the floor in the hover", () => {
  const column = (fixed) => ({ step: 0, variants: { plain: { layers: [{ drift: { w1: 9 }, drift_fixed: fixed, taps: { act_input: { std: 1 } } }] } } });
  const first = { w1: null, unit_median: null, unit_p90: null, floor: 0.05, std: 0.5 };
  const later = { w1: 0.1, unit_median: 0.2, unit_p90: 0.3, floor: 0.05, std: 0.5 };
  const flat = { ...later, std: 0 };
  const { y, raw } = relativeDrift([column(first), column(later), column(flat)], "plain", 0);
  assert.equal(y[0], null, "nothing to compare with on the first frame");
  assert.ok(Math.abs(y[1] - 0.4) < 1e-12, "0.2 / 0.5: the batch-based w1 is not used");
  assert.equal(y[2], null, "no spread, no ratio");
  assert.equal(raw[1], "0.2; sampling floor 0.1");
});

test("runs recorded before fixed-data drift fall back to the batch-to-batch W1 and say so", () => {
  const column = (w1, std) => ({ step: 0, variants: { plain: { layers: [{ drift: w1 === null ? null : { w1 }, taps: { act_input: { std } } }] } } });
  const { y, raw } = relativeDrift([column(null, 1), column(0.02, 0.1), column(0.5, 0)], "plain", 0);
  assert.equal(y[0], null);
  assert.ok(Math.abs(y[1] - 0.2) < 1e-12);
  assert.equal(y[2], null, "no spread, no ratio");
  assert.deepEqual(raw, ["—", "0.02; batch to batch", "0.5; batch to batch"]);
});

test("log ticks: plain numbers over a few decades, powers of ten over many", () => {
  // Over a decade or two: the 1-2-5 values inside, never every digit (which overlaps).
  assert.deepEqual(logTicks([0.04, 0.9]), { tickmode: "array", tickvals: [0.05, 0.1, 0.2, 0.5], ticktext: ["0.05", "0.1", "0.2", "0.5"] });
  // Within a fraction of a decade: at most five of 1…9 × 10ⁿ.
  const narrow = logTicks([0.3, 0.9]);
  assert.ok(narrow.tickvals.length >= 2 && narrow.tickvals.length <= 5, narrow.tickvals);
  assert.ok(narrow.tickvals.every((v) => v >= 0.3 && v <= 0.9));
  // Where the 1-2-5 values are too few: five, the lowest and the highest labelled, and 1 kept.
  assert.deepEqual(logTicks([0.55, 1.9]).tickvals, [0.6, 0.7, 0.9, 1, 1.5]);
  assert.deepEqual(logTicks([0.3, 1.5]).tickvals, [0.3, 0.5, 0.7, 1, 1.5]);
  assert.deepEqual(logTicks([0.012, 0.013]), { tickformat: ".3~g", nticks: 3 });
  assert.deepEqual(logTicks([1e-6, 1]), { dtick: 2, exponentformat: "power" });
  assert.deepEqual(logTicks([1e-3, 1e38]), { dtick: 9, exponentformat: "power" });
  assert.deepEqual(logTicks(null), { tickformat: ".2~g" });
});

test("events become dashed lines on every time axis; colours get alpha", () => {
  const shapes = eventShapes([{ step: 5, kind: "lr", value: 0.1, previous: 0.5 }, { step: 1, kind: "state", state: "paused" }], [["x", "y"], ["x2", "y2"]]);
  assert.equal(shapes.length, 2);
  assert.deepEqual(shapes.map((s) => [s.xref, s.yref, s.x0]), [["x", "y domain", 5], ["x2", "y2 domain", 5]]);
  assert.equal(withAlpha("#ff8000", 0.5), "rgba(255,128,0,0.5)");
});

test("densities divide each bin's share by its width", async () => {
  const { densities } = await import("../../frontend/js/charts/distribution.js");
  assert.deepEqual(densities([0.5, 0.25, 0.25], [0, 1, 2, 4]), [0.5, 0.25, 0.125]);
});

test("a step axis over part of the width gets proportionally fewer ticks", async () => {
  const { stepAxis } = await import("../../frontend/js/charts/plot.js");
  assert.equal(stepAxis().nticks, 6);
  assert.equal(stepAxis({ domain: [0, 0.47] }).nticks, 3);
  assert.equal(stepAxis({ domain: [0.7, 1] }).nticks, 2);
  assert.equal(stepAxis({ domain: [0, 0.3], nticks: 5 }).nticks, 5);
});

test("a band is one closed outline per run of steps where both its lines have a value", () => {
  // Along the lower line, back along the upper one; a step without a value ends a run.
  assert.deepEqual(bandOutline([0, 10, 20], [1, 2, 3], [4, 5, 6]), { x: [0, 10, 20, 20, 10, 0], y: [1, 2, 3, 6, 5, 4] });
  assert.deepEqual(bandOutline([0, 10, 20, 30, 40], [0, 1, null, 1, 0], [2, 3, 4, 3, undefined]), {
    x: [0, 10, 10, 0, null, 30, 30],
    y: [0, 1, 3, 2, null, 1, 3],
  });
  assert.deepEqual(bandOutline([0, 10], [null, null], [1, 2]), { x: [], y: [] });
});
