/** Percentile bands of a layer's chosen tap over steps, one panel per variant on one y axis. */

// Ioffe & Szegedy (2015), Figure 1 (b, c): 15th/50th/85th percentiles, here with 1st–99th too.

import { t } from "../i18n.js";
import { columnsIn } from "../state.js";
import { percentileLines, stepsOf, typicalUnitLines } from "../series.js";
import { setLegend } from "./card.js";
import { followHover } from "./cursor.js";
import { baseLayout, eventShapes, placeCursor, react, stepAxis, subplotLabel, valueAxis, variantColor, variantName, withAlpha } from "./plot.js";

const GAP = 0.05;

/** x-axis domains for n side-by-side panels. */
export function panelDomains(n) {
  const width = (1 - GAP * (n - 1)) / n;
  return Array.from({ length: n }, (_, i) => [i * (width + GAP), i * (width + GAP) + width]);
}

/**
 * A band between two lines as closed outlines (fill "toself"), one per run of steps where
 * both have a value, all in one trace: a band costs one trace, not two (a redraw costs by
 * the trace). Hover comes from the median line.
 */
export function bandOutline(x, lower, upper) {
  const xs = [];
  const ys = [];
  const has = (value) => value !== null && value !== undefined;
  let run = [];
  const close = () => {
    if (run.length === 0) return;
    if (xs.length) {
      xs.push(null);
      ys.push(null);
    }
    for (const i of run) {
      xs.push(x[i]);
      ys.push(lower[i]);
    }
    for (const i of run.reverse()) {
      xs.push(x[i]);
      ys.push(upper[i]);
    }
    run = [];
  };
  for (let i = 0; i < x.length; i += 1) {
    if (has(lower[i]) && has(upper[i])) run.push(i);
    else close();
  }
  close();
  return { x: xs, y: ys };
}

/** Lines drawn as one trace, a gap between them. */
function joined(x, lines) {
  return { x: lines.flatMap((_, k) => (k ? [null, ...x] : x)), y: lines.flatMap((y, k) => (k ? [null, ...y] : y)) };
}

const TYPICAL = "#1d2430";

/**
 * One variant's traces: the 1–99% and 15–85% bands, the median, and, where shown, the
 * typical unit's 15/85% (one trace) and 50% lines (dotted, dark over the pooled bands). The
 * median's hover says every number at that step.
 */
function variantTraces(p, levels, typical, color, xaxis, x) {
  const at = (level) => p[levels.indexOf(level)] ?? [];
  const [p1, p15, p50, p85, p99] = [1, 15, 50, 85, 99].map(at);
  const base = { type: "scatter", mode: "lines", xaxis, yaxis: "y", showlegend: false };
  const band = (lower, upper, alpha) => ({ ...base, ...bandOutline(x, lower, upper), fill: "toself", fillcolor: withAlpha(color, alpha), line: { color, width: 0 }, hoverinfo: "skip" });
  const unit = typical ? `${t("legend.typicalUnit")} ${typical.unit === null ? "" : `#${typical.unit + 1}`}` : "";
  const typicalHover = typical ? `<br>${unit}: %{customdata[4]:.3g} / %{customdata[5]:.3g} / %{customdata[6]:.3g}` : "";
  const traces = [
    band(p1, p99, 0.15),
    band(p15, p85, 0.4),
    {
      ...base,
      x,
      y: p50,
      name: t("legend.median"),
      line: { color, width: 1.6 },
      customdata: x.map((_, i) => [p1[i], p15[i], p85[i], p99[i], ...(typical ? typical.lines.map((line) => line[i]) : [])]),
      hovertemplate: `50%: %{y:.3g}<br>15–85%: %{customdata[1]:.3g} – %{customdata[2]:.3g}<br>1–99%: %{customdata[0]:.3g} – %{customdata[3]:.3g}${typicalHover}<extra></extra>`,
    },
  ];
  if (typical) {
    const [low, mid, high] = typical.lines;
    traces.push(
      { ...base, ...joined(x, [low, high]), name: unit, line: { color: TYPICAL, width: 0.9, dash: "dot" }, hoverinfo: "skip" },
      { ...base, x, y: mid, name: unit, line: { color: TYPICAL, width: 1.4, dash: "dot" }, hoverinfo: "skip" },
    );
  }
  return traces;
}

export function createBandsChart(card, { layer, view, cursor, runKey }) {
  let hooked = false;
  let axisNames = ["x"];
  return {
    name: `bands-${layer}`,
    element: card.plot,
    update(state) {
      const columns = columnsIn(state, view);
      const x = stepsOf(columns);
      const tap = view.tap;
      const levels = state.hello?.percentiles ?? [1, 15, 50, 85, 99];
      const domains = panelDomains(state.variants.length);
      const layout = {
        ...baseLayout({ uirevision: `${runKey()}:${tap}`, revision: state.revision, height: 230 }),
        yaxis: valueAxis(t(`tap.${tap}`), { anchor: "x" }),
        annotations: [],
      };
      const traces = [];
      axisNames = state.variants.map((_, i) => (i === 0 ? "x" : `x${i + 1}`));
      let typicalShown = false;
      state.variants.forEach((variant, i) => {
        const color = variantColor(variant, i);
        layout[i === 0 ? "xaxis" : `xaxis${i + 1}`] = stepAxis({ domain: domains[i], anchor: "y", ...(i ? { matches: "x" } : {}) });
        // The paper's view beside the pooled one: a typical unit, measured on act_input.
        const lines = tap === "act_input" ? typicalUnitLines(columns, variant, layer) : null;
        const typical = lines?.lines[1].some((v) => v !== null) ? lines : null;
        typicalShown ||= typical !== null;
        traces.push(...variantTraces(percentileLines(columns, variant, layer, tap, levels.length), levels, typical, color, axisNames[i], x));
        layout.annotations.push(subplotLabel(variantName(variant), axisNames[i], color));
      });
      layout.shapes = eventShapes(state.events, axisNames.map((axis) => [axis, "y"]));
      react(card.plot, traces, layout, `covshift-layer${layer + 1}-${tap}-percentiles`);
      card.stats.textContent = t(`tap.${tap}`);
      setLegend(card, [
        { label: "15–85%", color: "#777", width: 0, fill: "rgba(90,90,90,0.4)" },
        { label: "1–99%", color: "#777", width: 0, fill: "rgba(90,90,90,0.15)" },
        { label: t("legend.median"), color: "#555", width: 1.6 },
        ...(typicalShown ? [{ label: t("legend.typicalUnit"), title: t("legend.typicalUnitWhy"), color: TYPICAL, width: 1.4, dash: "dot" }] : []),
      ]);
      if (!hooked && card.plot.on) {
        followHover(card.plot, cursor);
        hooked = true;
      }
    },
    showCursor(step) {
      placeCursor(card.plot, card.overlay, step, axisNames);
    },
  };
}
