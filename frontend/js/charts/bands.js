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

/** The five traces of one variant's bands: 1–99 fill, 15–85 fill, median. */
function bandTraces(p, levels, color, xaxis, x) {
  const at = (level) => levels.indexOf(level);
  const line = (k, extra = {}) => ({
    type: "scatter",
    mode: "lines",
    x,
    y: k >= 0 ? p[k] : [],
    xaxis,
    yaxis: "y",
    name: `${levels[k]}%`,
    line: { color, width: 0 },
    hovertemplate: `${levels[k]}%: %{y:.3g}<extra></extra>`,
    ...extra,
  });
  return [
    line(at(1)),
    line(at(99), { fill: "tonexty", fillcolor: withAlpha(color, 0.15) }),
    line(at(15)),
    line(at(85), { fill: "tonexty", fillcolor: withAlpha(color, 0.4) }),
    line(at(50), { line: { color, width: 1.6 } }),
  ];
}

const TYPICAL = "#1d2430";

/** One typical unit's 15/50/85 lines (dotted, dark over the pooled bands). */
function typicalTraces({ lines, unit }, xaxis, x) {
  return lines.map((y, k) => ({
    type: "scatter",
    mode: "lines",
    x,
    y,
    xaxis,
    yaxis: "y",
    name: `${t("legend.typicalUnit")} ${unit === null ? "" : `#${unit + 1}`} ${[15, 50, 85][k]}%`,
    line: { color: TYPICAL, width: k === 1 ? 1.4 : 0.9, dash: "dot" },
    hovertemplate: `${t("legend.typicalUnit")} ${[15, 50, 85][k]}%: %{y:.3g}<extra></extra>`,
  }));
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
        traces.push(...bandTraces(percentileLines(columns, variant, layer, tap, levels.length), levels, color, axisNames[i], x));
        // The paper's view beside the pooled one: a typical unit, measured on act_input.
        const typical = tap === "act_input" ? typicalUnitLines(columns, variant, layer) : null;
        if (typical?.lines[1].some((v) => v !== null)) {
          traces.push(...typicalTraces(typical, axisNames[i], x));
          typicalShown = true;
        }
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
