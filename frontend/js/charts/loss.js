/** Loss and accuracy per variant, a chart each: training (this batch) as lines, test (held out) as dotted lines. */

import { t } from "../i18n.js";
import { columnsIn, INFERENCE_KEYS, testsIn } from "../state.js";
import { extent, markedEvents, stepsOf, testMetric, trainMetric } from "../series.js";
import { createCanvasChart } from "./canvas.js";
import { linearTicks, padded } from "./ticks.js";
import { setLegend } from "./card.js";
import { eventColor, eventText, variantColor, variantName, withAlpha } from "./plot.js";

// Accuracy in train mode ("forgot eval()"), with population statistics and with the
// cumulative average of the batch statistics, when measured.
const INFERENCE_DASH = { acc_train_mode: "dash", acc_population: "dashdot", acc_cumulative: "longdash" };

/** Whether any kept test point carries `key` for some variant. */
function measured(tests, key) {
  return tests.some((point) => Object.values(point.variants).some((entry) => entry && key in entry));
}

function inferenceSeries(state, tests) {
  const out = [];
  for (const key of INFERENCE_KEYS) {
    if (!measured(tests, key)) continue;
    state.variants.forEach((variant, i) => {
      const series = testMetric(tests, variant, key);
      if (!series.y.some((value) => value !== null)) return;
      const color = variantColor(variant, i);
      out.push({ ...series, name: `${variantName(variant)} · ${t(`legend.${key}`)}`, color: withAlpha(color, 0.8), width: 1.1, dash: INFERENCE_DASH[key], format: f3 });
    });
  }
  return out;
}

const f3 = (v) => v.toFixed(3);

// Dots on the test points only while few.
const MARKERS_UP_TO = 40;

const SUPERSCRIPT = { "-": "\u207b", 0: "\u2070", 1: "\u00b9", 2: "\u00b2", 3: "\u00b3", 4: "\u2074", 5: "\u2075", 6: "\u2076", 7: "\u2077", 8: "\u2078", 9: "\u2079" };

/** 10ⁿ written as Plotly's "power" format does: 1, 10, then 10², 10⁻³. */
function power(n) {
  if (n === 0) return "1";
  if (n === 1) return "10";
  return `10${[...String(n)].map((c) => SUPERSCRIPT[c]).join("")}`;
}

/**
 * Tick labels on a log axis that never run into each other, {values, labels}: over many
 * decades, powers of ten a whole number of decades apart; over two decades or fewer, the
 * 1-2-5 values inside the span (or, where fewer than three fall inside, at most five of
 * 1, 1.5, 2 … 9 × 10ⁿ, the lowest and the highest among them, and 1), written with two
 * digits; within a sliver of a decade, three plain values.
 */
export function logTicks(span) {
  if (!span || !(span[0] > 0) || !(span[1] > span[0])) return { values: [], labels: [] };
  const decades = Math.log10(span[1] / span[0]);
  if (decades > 2) {
    // About five labels, a whole number of decades apart (a diverged run spans dozens).
    const every = Math.max(1, Math.ceil(decades / 5));
    const values = [];
    for (let n = Math.ceil(Math.log10(span[0]) / every) * every; n <= Math.log10(span[1]); n += every) values.push(n);
    return { values: values.map((n) => Number(`1e${n}`)), labels: values.map(power) };
  }
  const inside = (mantissas) => {
    const values = [];
    for (let k = Math.floor(Math.log10(span[0])); k <= Math.ceil(Math.log10(span[1])); k += 1) {
      for (const m of mantissas) {
        const value = Number((m * 10 ** k).toPrecision(2));
        if (value >= span[0] && value <= span[1]) values.push(value);
      }
    }
    return values;
  };
  let values = inside([1, 2, 5]);
  if (values.length < 3) {
    // At most five, spread evenly from the lowest to the highest so both ends are labelled,
    // a power of ten inside taking the place of its nearest pick.
    const all = inside([1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9]);
    const count = Math.min(5, all.length);
    const picks = Array.from({ length: count }, (_, i) => (count < 2 ? i : Math.round((i * (all.length - 1)) / (count - 1))));
    all.forEach((value, at) => {
      if (!Number.isInteger(Math.log10(value)) || picks.includes(at) || count < 3) return;
      let nearest = 1;
      for (let k = 1; k < count - 1; k += 1) if (Math.abs(picks[k] - at) < Math.abs(picks[nearest] - at)) nearest = k;
      picks[nearest] = at;
    });
    values = picks.map((at) => all[at]);
  }
  if (values.length < 2) {
    // A sliver of a decade holds none of those: three evenly spaced, three digits each.
    values = linearTicks(span[0], span[1], 3).values.filter((v) => v > 0);
    return { values, labels: values.map((v) => String(Number(v.toPrecision(3)))) };
  }
  return { values, labels: values.map((v) => String(v)) };
}

/** A log axis' range: the values' span with 5% of its decades on each side. */
export function logRange(span) {
  if (!span || !(span[0] > 0)) return [0.1, 1];
  const [lo, hi] = [Math.log10(span[0]), Math.log10(span[1])];
  const pad = hi > lo ? 0.05 * (hi - lo) : 0.1;
  return [10 ** (lo - pad), 10 ** (hi + pad)];
}

function metricSeries(state, columns, tests, key) {
  const x = stepsOf(columns);
  const out = [];
  state.variants.forEach((variant, i) => {
    const color = variantColor(variant, i);
    const name = variantName(variant);
    out.push({ x, y: trainMetric(columns, variant, key), name: `${name} · ${t("legend.train")}`, color: withAlpha(color, 0.75), width: 1.3, format: f3 });
    const test = testMetric(tests, variant, key);
    out.push({ ...test, name: `${name} · ${t("legend.test")}`, color, width: 1.2, dash: "dot", dots: test.x.length <= MARKERS_UP_TO, format: f3 });
  });
  return out;
}

// Each metric's own chart: its y axis, and what it adds to the training and test lines.
const METRICS = {
  loss: {
    name: "loss",
    filename: "covshift-loss",
    // Log scale: the first steps' loss would otherwise flatten everything after them.
    yaxis: (lines) => {
      // Ticks over the range drawn: a single value still gets labels around it.
      const range = logRange(extent(lines.map((s) => s.y)));
      return { title: t("axis.loss"), log: true, range, ticks: logTicks(range) };
    },
    extra: () => [],
    marks: () => [],
    legend: () => [],
  },
  acc: {
    name: "accuracy",
    filename: "covshift-accuracy",
    yaxis: () => ({ title: t("axis.acc"), range: [-0.04, 1.04], percent: true }),
    // How BN scores at inference.
    extra: (state, tests) => inferenceSeries(state, tests),
    // The changes' markers (hover them), at the bottom.
    marks: (state) => markedEvents(state.events).map((event) => ({ x: event.step, y: -0.02, color: eventColor(event.kind), text: `${t("status.step")} ${event.step}: ${eventText(event)}` })),
    legend: (tests) =>
      INFERENCE_KEYS.filter((key) => measured(tests, key)).map((key) => ({ label: t(`legend.${key}`), color: "#666", width: 1.1, dash: INFERENCE_DASH[key] })),
  },
};

function createMetricChart(card, { view, cursor, runKey }, key) {
  const metric = METRICS[key];
  const chart = createCanvasChart(card, { height: 230, cursor });
  return {
    name: metric.name,
    element: card.plot,
    update(state) {
      const columns = columnsIn(state, view);
      const tests = testsIn(state, view);
      const lines = metricSeries(state, columns, tests, key);
      const steps = extent([stepsOf(columns), tests.map((point) => point.step)]);
      chart.draw({
        key: runKey(),
        filename: metric.filename,
        x: { range: steps && steps[1] > steps[0] ? steps : padded(steps), title: t("axis.step"), steps: true, header: (step) => `${t("status.step")} ${step}` },
        y: metric.yaxis(lines),
        panels: [
          {
            series: [...lines, ...metric.extra(state, tests)],
            lines: markedEvents(state.events).map((event) => ({ x: event.step, color: eventColor(event.kind) })),
            marks: metric.marks(state),
          },
        ],
      });
      setLegend(card, [
        ...state.variants.map((variant, i) => ({ label: variantName(variant), color: variantColor(variant, i), width: 3 })),
        { label: t("legend.train"), color: "#666", width: 1.3 },
        { label: t("legend.test"), color: "#666", width: 1.2, dash: "dot" },
        ...metric.legend(tests),
      ]);
    },
    showCursor(step) {
      chart.showCursor(step);
    },
  };
}

/** Training and test loss per variant, on a log axis. */
export function createLossChart(card, context) {
  return createMetricChart(card, context, "loss");
}

/** Training and test accuracy per variant; for BN also train-mode and population scoring. */
export function createAccuracyChart(card, context) {
  return createMetricChart(card, context, "acc");
}
