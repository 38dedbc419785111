// The pure parts of the charts: heatmap pixels, panel layout, drift scaling, tick choice.
import assert from "node:assert/strict";
import { test } from "node:test";

import { bandsFigure } from "../../frontend/js/charts/bands.js";
import { zoomRange } from "../../frontend/js/charts/canvas.js";
import { bandRuns, figureLayout, hoverAt, panelDomains, pointAt } from "../../frontend/js/charts/figure.js";
import { linearTicks, niceStep, padded, percentLabel, spacedTicks, tickLabel } from "../../frontend/js/charts/ticks.js";
import { relativeDrift } from "../../frontend/js/charts/drift.js";
import { colormap, paintColumns } from "../../frontend/js/charts/heatmap.js";
import { logRange, logTicks } from "../../frontend/js/charts/loss.js";
import { cursorPlaces, eventShapes, withAlpha } from "../../frontend/js/charts/plot.js";

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
  assert.deepEqual(logTicks([0.04, 0.9]), { values: [0.05, 0.1, 0.2, 0.5], labels: ["0.05", "0.1", "0.2", "0.5"] });
  // Within a fraction of a decade: at most five of 1…9 × 10ⁿ.
  const narrow = logTicks([0.3, 0.9]);
  assert.ok(narrow.values.length >= 2 && narrow.values.length <= 5, narrow.values);
  assert.ok(narrow.values.every((v) => v >= 0.3 && v <= 0.9));
  // Where the 1-2-5 values are too few: five, the lowest and the highest labelled, and 1 kept.
  assert.deepEqual(logTicks([0.55, 1.9]).values, [0.6, 0.7, 0.9, 1, 1.5]);
  assert.deepEqual(logTicks([0.3, 1.5]).values, [0.3, 0.5, 0.7, 1, 1.5]);
  // A sliver of a decade: three plain values of three digits.
  assert.deepEqual(logTicks([0.012, 0.013]), { values: [0.012, 0.0125, 0.013], labels: ["0.012", "0.0125", "0.013"] });
  // Many decades: powers of ten, about five, written as powers.
  assert.deepEqual(logTicks([1e-6, 1]), { values: [1e-6, 1e-4, 0.01, 1], labels: ["10\u207b\u2076", "10\u207b\u2074", "10\u207b\u00b2", "1"] });
  assert.deepEqual(logTicks([1e-3, 1e38]).labels, ["1", "10\u2079", "10\u00b9\u2078", "10\u00b2\u2077", "10\u00b3\u2076"]);
  assert.deepEqual(logTicks(null), { values: [], labels: [] });
  // A loss that has not moved yet: labels around it still, over the range drawn.
  assert.deepEqual(logTicks(logRange([1, 1])).values, [0.8, 0.9, 1]);
  // The range: 5% of the decades spanned on each side.
  const [lo, hi] = logRange([0.1, 10]);
  assert.ok(Math.abs(Math.log10(lo) + 1.1) < 1e-12 && Math.abs(Math.log10(hi) - 1.1) < 1e-12);
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

test("a band is drawn over each run of steps where both its lines have a value", () => {
  assert.deepEqual(bandRuns([1, 2, 3], [4, 5, 6]), [[0, 3]]);
  assert.deepEqual(bandRuns([0, 1, null, 1, 0], [2, 3, 4, 3, undefined]), [[0, 2], [3, 4]]);
  assert.deepEqual(bandRuns([null, null], [1, 2]), []);
});

test("canvas axes: 1-2-5 steps, at most the ticks asked for, labels as Plotly writes them", () => {
  assert.equal(niceStep(0.3), 0.5);
  assert.equal(niceStep(7), 10);
  assert.equal(niceStep(2000), 2000);
  assert.deepEqual(linearTicks(-0.37, 1.21, 6), { step: 0.5, values: [0, 0.5, 1] });
  assert.deepEqual(linearTicks(0, 2000, 3).values, [0, 1000, 2000]);
  const { values } = linearTicks(-3.3, 2.9, 6);
  assert.ok(values.length <= 7 && values[0] >= -3.3 && values.at(-1) <= 2.9);
  assert.equal(tickLabel(-0.5, 0.5), "\u22120.5");
  assert.equal(tickLabel(0.1 + 0.2 - 0.3, 0.1), "0");
  assert.equal(tickLabel(1500, 500), "1500");
  assert.equal(tickLabel(2000, 1000), "2k");
  assert.equal(tickLabel(20000, 10000), "20k");
  assert.deepEqual(padded([0, 10]), [-0.5, 10.5]);
  assert.deepEqual(padded([2, 2]), [1.8, 2.2]);
  assert.deepEqual(padded(null), [0, 1]);
});

test("step labels never touch: a wider step where they would", () => {
  // Six pixels a character; a panel 120 px wide over 0–12000 steps.
  const measure = (text) => 6 * text.length;
  const { values, labels } = spacedTicks(0, 12000, 3, 120, measure);
  assert.ok(values.length >= 2);
  const px = (v) => (v / 12000) * 120;
  for (let i = 1; i < values.length; i += 1) {
    assert.ok(px(values[i]) - px(values[i - 1]) >= (measure(labels[i]) + measure(labels[i - 1])) / 2 + 8);
  }
  assert.deepEqual(spacedTicks(0, 12000, 3, 600, measure), { values: [0, 5000, 10000], labels: ["0", "5k", "10k"] });
});

const frame = (step, plain, bn, unit = null) => ({
  step,
  variants: {
    plain: { layers: [{ taps: { act_input: { percentiles: plain } }, drift_fixed: unit ? { unit: 3, unit_percentiles: unit } : null }] },
    bn: { layers: [{ taps: { act_input: { percentiles: bn } } }] },
  },
});

test("the bands chart: one step range for every panel, one value range over every line", () => {
  const columns = [frame(0, [-1, -0.5, 0, 0.5, 1], [-2, -1, 0, 1, 2], [-0.2, 0, 3]), frame(50, [-1, -0.4, 0.1, 0.6, 1.2], null)];
  const figure = bandsFigure(columns, ["plain", "bn"], 0, "act_input");
  assert.deepEqual(figure.x, [0, 50]);
  assert.deepEqual(figure.xRange, [0, 50]);
  // -2 (BN's 1%) to 3 (plain's typical unit), 5% of the span on each side
  assert.deepEqual(figure.yRange, [-2.25, 3.25]);
  assert.deepEqual(figure.panels[1].p99, [2, null], "a frame without BN's tap is a gap");
  assert.equal(figure.panels[0].typical.unit, 3);
  assert.equal(figure.panels[1].typical, null, "no typical unit measured: none drawn");
  assert.equal(bandsFigure(columns, ["plain"], 0, "linear_out").panels[0].typical, null, "only on act_input");
});

test("a canvas chart's hover and cursor map a step to the same place", () => {
  const figure = { height: 230, x: { range: [0, 1000] }, panels: [{ series: [] }, { series: [] }] };
  const width = 800;
  const [place] = cursorPlaces(figureLayout(figure), width, 250, ["x2"]);
  const at = pointAt(figure, width, place.left, place.top + place.height / 2);
  assert.equal(at.panel, 1);
  assert.ok(Math.abs(at.x - 250) < 1e-9);
  assert.equal(place.top, 20);
  assert.equal(place.height, 230 - 20 - 38);
  assert.equal(pointAt(figure, width, 5, 100), null, "left of the panels: nothing");
  const [a, b] = panelDomains(2);
  assert.equal(pointAt(figure, width, 56 + (width - 68) * ((a[1] + b[0]) / 2), 100), null, "between the panels: nothing");
});

test("a drag zooms in on the stretch it spans, never past the range, never to nothing", () => {
  assert.deepEqual(zoomRange([0, 1000], 700, 200), [200, 700]);
  assert.deepEqual(zoomRange([0, 1000], -50, 300), [0, 300]);
  assert.equal(zoomRange([0, 1000], 400, 400.5), null);
});

test("a canvas chart's hover: each series' nearest point, or a mark's own text", () => {
  const figure = {
    x: { header: (x) => `step ${x}` },
    panels: [
      {
        series: [
          { x: [0, 50, 100], y: [1, 2, null], name: "train" },
          { x: [0, 100], y: [0.5, 0.25], name: "test", format: (v) => v.toFixed(2) },
          { x: [0, 50, 100], y: [0, 0, 0], hover: false },
        ],
        marks: [{ x: 80, y: 0, text: "learning rate 0.1 → 1" }],
      },
    ],
  };
  assert.deepEqual(hoverAt(figure, 0, 40, 5), { x: 50, text: "step 50\ntrain: 2\ntest: 0.50" });
  // At 100 the training line has a gap: only the test point speaks.
  assert.deepEqual(hoverAt(figure, 0, 97, 1), { x: 100, text: "step 100\ntest: 0.25" });
  assert.deepEqual(hoverAt(figure, 0, 83, 5), { x: 80, text: "learning rate 0.1 → 1" });
  assert.equal(percentLabel(0.2, 0.2), "20%");
  assert.equal(percentLabel(0.025, 0.005), "2.5%");
});
