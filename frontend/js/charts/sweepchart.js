/** A sweep's charts: final test accuracy per variant, and batch-statistic noise against 1/√B. */

import { formatNumber } from "../bounds.js";
import { t, translatePage } from "../i18n.js";
import { createCard, setLegend } from "./card.js";
import { baseLayout, purge, react, valueAxis, variantColor, variantName } from "./plot.js";

// Room one tick label needs on the x axis, in pixels ("0.03", "256" at 11 px, plus a gap).
export const LABEL_PX = 44;
const MARGIN = { l: 56, r: 16 };
// The plot width assumed before the chart is laid out (a hidden element measures 0).
const FALLBACK_WIDTH_PX = 480;

/**
 * Tick values for a log axis over the swept values: each value labelled where there is room,
 * none closer to the previous one than one label's width at this plot width (in decades:
 * span × labelPx / widthPx). The smallest and largest values are always labelled (pure).
 */
export function tickValues(values, widthPx, labelPx = LABEL_PX) {
  const sorted = [...new Set(values.filter((v) => v > 0))].sort((a, b) => a - b);
  if (sorted.length <= 1) return sorted;
  const gap = (Math.log10(sorted.at(-1) / sorted[0]) * labelPx) / Math.max(widthPx, labelPx);
  const kept = [sorted[0]];
  for (const value of sorted.slice(1)) if (Math.log10(value / kept.at(-1)) >= gap) kept.push(value);
  // The largest takes the place of the last kept one when that is too close to it: the one
  // before that is at least `gap` below the last kept, so further still from the largest.
  if (kept.at(-1) !== sorted.at(-1) && kept.length > 1) kept[kept.length - 1] = sorted.at(-1);
  return kept;
}

/** An x axis on a log scale over every planned value (fixed as points arrive), labelled with them. */
export function sweepAxis(values, widthPx, title) {
  const positive = values.filter((v) => v > 0);
  const low = Math.log10(Math.min(...positive));
  const high = Math.log10(Math.max(...positive));
  const span = high - low;
  // Half a label of room at each end, so the first and last labels stay inside the chart.
  const pad = span > 0 ? Math.max(0.04 * span, (0.6 * span * LABEL_PX) / Math.max(widthPx, LABEL_PX)) : 0.3;
  const ticks = tickValues(positive, widthPx);
  return {
    type: "log",
    range: [low - pad, high + pad],
    tickmode: "array",
    tickvals: ticks,
    ticktext: ticks.map((v) => formatNumber(v)),
    tickangle: 0,
    title: { text: title, standoff: 4, font: { size: 10 } },
    gridcolor: "#eee",
    zeroline: false,
  };
}

const STATUS_SYMBOL = { trained: "circle" };

/** Final test accuracy (eval mode) per variant against the swept value: traces and legend. */
export function accuracyTraces(state) {
  const variants = state.hello?.config?.variants ?? [];
  const xs = state.points.map((p) => p.value);
  return variants.map((variant, k) => {
    const entries = state.points.map((p) => p.variants?.[variant] ?? {});
    const color = variantColor(variant, k);
    return {
      type: "scatter",
      mode: "lines+markers",
      x: xs,
      y: entries.map((e) => e.test?.acc ?? null),
      name: variantName(variant),
      text: entries.map((e) => t(`sweep.status.${e.status ?? "skipped"}`)),
      line: { color, width: 2 },
      marker: { color, size: 8, symbol: entries.map((e) => STATUS_SYMBOL[e.status] ?? "x") },
      hovertemplate: `%{y:.3f} · %{text}<extra>${variantName(variant)}</extra>`,
    };
  });
}

/** The first normalizer layer's batch-statistic noise per variant, and 1/√B (batch-size sweeps). */
export function noiseTraces(state) {
  const hello = state.hello;
  const measured = (hello?.config?.variants ?? []).filter((v) => state.points.some((p) => p.batch_noise?.[v]?.length));
  const xs = state.points.map((p) => p.value);
  const traces = [];
  measured.forEach((variant) => {
    const color = variantColor(variant, hello.config.variants.indexOf(variant));
    for (const [stat, dash] of [["mean", "solid"], ["var", "dot"]]) {
      traces.push({
        type: "scatter",
        mode: "lines+markers",
        x: xs,
        y: state.points.map((p) => p.batch_noise?.[variant]?.[0]?.[stat] ?? null),
        name: `${variantName(variant)} · ${t(`sweep.${stat}`)}`,
        line: { color, width: 2, dash },
        marker: { color, size: 6 },
        hovertemplate: `%{y:.3f}<extra>${variantName(variant)} · ${t(`sweep.${stat}`)}</extra>`,
      });
    }
  });
  const sizes = hello?.values ?? [];
  traces.push({
    type: "scatter",
    mode: "lines",
    x: sizes,
    y: sizes.map((b) => 1 / Math.sqrt(Math.max(b, 2))),
    name: t("sweep.reference"),
    line: { color: "#000", width: 1.5 },
    hovertemplate: `%{y:.3f}<extra>${t("sweep.reference")}</extra>`,
  });
  return { traces, measured };
}

/** The sweep's chart cards in `root`: update(state, runKey) redraws, reset() empties them. */
export function createSweepCharts(root) {
  const accuracy = createCard({ title: "sweep.accTitle", note: "sweep.accNote", className: "sweep-acc" });
  const noise = createCard({ title: "sweep.noiseTitle", note: "sweep.noiseNote", className: "sweep-noise" });
  root.append(accuracy.root, noise.root);

  function width(card) {
    const measured = card.plot.clientWidth - MARGIN.l - MARGIN.r;
    return measured > 0 ? measured : FALLBACK_WIDTH_PX;
  }

  function update(state, runKey) {
    const hello = state.hello;
    if (!hello) return;
    translatePage(root);
    const field = t(`sweep.field.${hello.field}`);
    const layout = (card, yaxis) => ({
      ...baseLayout({ uirevision: `sweep-${runKey}`, revision: state.revision, height: 260, margin: MARGIN }),
      hovermode: "closest",
      xaxis: sweepAxis(hello.values, width(card), field),
      yaxis,
    });
    const variants = hello.config?.variants ?? [];
    react(accuracy.plot, accuracyTraces(state), layout(accuracy, valueAxis(t("axis.acc"), { range: [-0.04, 1.04], tickformat: ".0%" })), "covshift-sweep-accuracy");
    setLegend(accuracy, variants.map((v, k) => ({ label: variantName(v), color: variantColor(v, k), width: 3, marker: true })));
    noise.root.hidden = hello.field !== "batch_size";
    if (noise.root.hidden) return;
    const { traces, measured } = noiseTraces(state);
    // "D2": labels at 1, 2 and 5 of each decade only; Plotly's default crowds every digit.
    react(noise.plot, traces, layout(noise, valueAxis(t("sweep.noiseAxis"), { type: "log", dtick: "D2" })), "covshift-sweep-noise");
    setLegend(noise, [
      ...measured.map((v) => ({ label: variantName(v), color: variantColor(v, variants.indexOf(v)), width: 3 })),
      { label: t("sweep.mean"), color: "#666", width: 1.5 },
      { label: t("sweep.var"), color: "#666", width: 1.5, dash: "dot" },
      { label: t("sweep.reference"), color: "#000", width: 1.5 },
    ]);
  }

  function reset() {
    purge(accuracy.plot);
    purge(noise.plot);
  }

  return { root, update, reset };
}
