/** Loss and accuracy per variant, a chart each: training (this batch) as lines, test (held out) as dotted lines. */

import { t } from "../i18n.js";
import { columnsIn, INFERENCE_KEYS, testsIn } from "../state.js";
import { extent, stepsOf, testMetric, trainMetric } from "../series.js";
import { setLegend } from "./card.js";
import { followHover } from "./cursor.js";
import { baseLayout, eventMarkerTrace, eventShapes, placeCursor, react, stepAxis, valueAxis, variantColor, variantName, withAlpha } from "./plot.js";

// Accuracy in train mode ("forgot eval()"), with population statistics and with the
// cumulative average of the batch statistics, when measured.
const INFERENCE_DASH = { acc_train_mode: "dash", acc_population: "dashdot", acc_cumulative: "longdash" };

/** Whether any kept test point carries `key` for some variant. */
function measured(tests, key) {
  return tests.some((point) => Object.values(point.variants).some((entry) => entry && key in entry));
}

function inferenceTraces(state, tests) {
  const out = [];
  for (const key of INFERENCE_KEYS) {
    if (!measured(tests, key)) continue;
    state.variants.forEach((variant, i) => {
      const series = testMetric(tests, variant, key);
      if (!series.y.some((value) => value !== null)) return;
      const color = variantColor(variant, i);
      out.push({
        type: "scatter",
        mode: "lines",
        x: series.x,
        y: series.y,
        name: `${variantName(variant)} · ${t(`legend.${key}`)}`,
        line: { color: withAlpha(color, 0.8), width: 1.1, dash: INFERENCE_DASH[key] },
        hovertemplate: "%{y:.3f}",
      });
    });
  }
  return out;
}

// Hundreds of SVG markers cost more than the rest of the chart: dots only while few.
const MARKERS_UP_TO = 40;

/**
 * Tick labels on a log axis that never run into each other: over many decades, powers of
 * ten a whole number of decades apart; over two decades or fewer, where Plotly would label
 * every digit ("0.04 0.05 … 0.9" on a short chart), the 1-2-5 values inside the span (or,
 * where fewer than three fall inside, at most five of 1, 1.5, 2 … 9 × 10ⁿ, the lowest and
 * the highest among them, and 1), written with two digits.
 */
export function logTicks(span) {
  if (!span || !(span[0] > 0) || !(span[1] > span[0])) return { tickformat: ".2~g" };
  const decades = Math.log10(span[1] / span[0]);
  if (decades > 2) {
    // About five labels, a whole number of decades apart (a diverged run spans dozens).
    return { dtick: Math.max(1, Math.ceil(decades / 5)), exponentformat: "power" };
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
  // A sliver of a decade holds none of those: a few of Plotly's own, three digits each.
  if (values.length < 2) return { tickformat: ".3~g", nticks: 3 };
  return { tickmode: "array", tickvals: values, ticktext: values.map((v) => String(v)) };
}

function traces(state, columns, tests, key) {
  const x = stepsOf(columns);
  const out = [];
  state.variants.forEach((variant, i) => {
    const color = variantColor(variant, i);
    const name = variantName(variant);
    out.push({
      type: "scatter",
      mode: "lines",
      x,
      y: trainMetric(columns, variant, key),
      name: `${name} · ${t("legend.train")}`,
      line: { color: withAlpha(color, 0.75), width: 1.3 },
      hovertemplate: "%{y:.3f}",
    });
    const test = testMetric(tests, variant, key);
    out.push({
      type: "scatter",
      mode: test.x.length <= MARKERS_UP_TO ? "lines+markers" : "lines",
      x: test.x,
      y: test.y,
      name: `${name} · ${t("legend.test")}`,
      line: { color, width: 1.2, dash: "dot" },
      marker: { color, size: 5 },
      hovertemplate: "%{y:.3f}",
    });
  });
  return out;
}

// Each metric's own chart (a figure of one panel redraws in 0.6 of the time of the two-panel
// figure they were): its y axis, and what it adds to the training and test lines.
const METRICS = {
  loss: {
    name: "loss",
    filename: "covshift-loss",
    // Log scale: the first steps' loss would otherwise flatten everything after them.
    yaxis: (lines) => valueAxis(t("axis.loss"), { type: "log", ...logTicks(extent(lines.map((trace) => trace.y))) }),
    extra: () => [],
    legend: () => [],
  },
  acc: {
    name: "accuracy",
    filename: "covshift-accuracy",
    yaxis: () => valueAxis(t("axis.acc"), { range: [-0.04, 1.04], tickformat: ".0%" }),
    // How BN scores at inference, and the changes' markers (hover them), at the bottom.
    extra: (state, tests) => [...inferenceTraces(state, tests), eventMarkerTrace(state.events, "x", "y", -0.02)],
    legend: (tests) =>
      INFERENCE_KEYS.filter((key) => measured(tests, key)).map((key) => ({ label: t(`legend.${key}`), color: "#666", width: 1.1, dash: INFERENCE_DASH[key] })),
  },
};

function createMetricChart(card, { view, cursor, runKey }, key) {
  const metric = METRICS[key];
  let hooked = false;
  return {
    name: metric.name,
    element: card.plot,
    update(state) {
      const columns = columnsIn(state, view);
      const tests = testsIn(state, view);
      const lines = traces(state, columns, tests, key);
      const layout = {
        ...baseLayout({ uirevision: runKey(), revision: state.revision, height: 230 }),
        xaxis: stepAxis(),
        yaxis: metric.yaxis(lines),
        shapes: eventShapes(state.events, [["x", "y"]]),
      };
      react(card.plot, [...lines, ...metric.extra(state, tests)], layout, metric.filename);
      setLegend(card, [
        ...state.variants.map((variant, i) => ({ label: variantName(variant), color: variantColor(variant, i), width: 3 })),
        { label: t("legend.train"), color: "#666", width: 1.3 },
        { label: t("legend.test"), color: "#666", width: 1.2, dash: "dot" },
        ...metric.legend(tests),
      ]);
      if (!hooked && card.plot.on) {
        followHover(card.plot, cursor);
        hooked = true;
      }
    },
    showCursor(step) {
      placeCursor(card.plot, card.overlay, step, ["x"]);
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
