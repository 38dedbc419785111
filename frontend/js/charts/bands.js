/** Percentile bands of a layer's chosen tap over steps, one panel per variant on one y axis. */

// Ioffe & Szegedy (2015), Figure 1 (b, c): 15th/50th/85th percentiles, here with 1st–99th too.

import { t } from "../i18n.js";
import { columnsIn } from "../state.js";
import { extent, markedEvents, percentileLines, stepsOf, typicalUnitLines } from "../series.js";
import { createCanvasChart } from "./canvas.js";
import { g3 } from "./figure.js";
import { padded } from "./ticks.js";
import { setLegend } from "./card.js";
import { eventColor, variantColor, variantName, withAlpha } from "./plot.js";
import { setText } from "../dom.js";

const HEIGHT = 230;
const TYPICAL = "#1d2430";
const LEVELS = [1, 15, 50, 85, 99];

/**
 * What the chart shows (pure): the steps, per variant its 1/15/50/85/99th percentile lines
 * and, on act_input, the typical unit's, one step range for every panel and one value range
 * spanning every line of every panel (so a narrow band and a wide one compare).
 */
export function bandsFigure(columns, variants, layer, tap, levels = LEVELS) {
  const x = stepsOf(columns);
  const panels = variants.map((variant) => {
    const lines = percentileLines(columns, variant, layer, tap, levels.length);
    const at = (level) => lines[levels.indexOf(level)] ?? x.map(() => null);
    const unit = tap === "act_input" ? typicalUnitLines(columns, variant, layer) : null;
    const typical = unit?.lines[1].some((v) => v !== null) ? unit : null;
    return { variant, p1: at(1), p15: at(15), p50: at(50), p85: at(85), p99: at(99), typical };
  });
  const values = panels.flatMap((p) => [p.p1, p.p15, p.p50, p.p85, p.p99, ...(p.typical?.lines ?? [])]);
  const steps = x.length ? [x[0], x[x.length - 1]] : null;
  return { x, panels, xRange: steps && steps[1] > steps[0] ? steps : padded(steps), yRange: padded(extent(values)) };
}

/** One variant's series: the two bands, the median (whose hover says every number at that
 * step) and the typical unit's 15/50/85% (dotted, dark over the pooled bands). */
function variantSeries(x, p, color) {
  const unit = p.typical ? `${t("legend.typicalUnit")}${p.typical.unit === null ? "" : ` #${p.typical.unit + 1}`}` : "";
  const hover = (i) =>
    [
      `${variantName(p.variant)} · 50%: ${g3(p.p50[i])}`,
      `15–85%: ${g3(p.p15[i])} – ${g3(p.p85[i])}`,
      `1–99%: ${g3(p.p1[i])} – ${g3(p.p99[i])}`,
      ...(p.typical ? [`${unit}: ${p.typical.lines.map((line) => g3(line[i])).join(" / ")}`] : []),
    ].join("\n");
  const band = (y0, y, alpha) => ({ x, y0, y, fill: "band", fillColor: withAlpha(color, alpha), hover: false });
  const series = [band(p.p1, p.p99, 0.15), band(p.p15, p.p85, 0.4), { x, y: p.p50, name: t("legend.median"), color, width: 1.6, hover }];
  if (p.typical) {
    const [low, mid, high] = p.typical.lines;
    const dotted = (y, width) => ({ x, y, name: unit, color: TYPICAL, width, dash: "dot", hover: false });
    series.push(dotted(low, 0.9), dotted(high, 0.9), dotted(mid, 1.4));
  }
  return series;
}

export function createBandsChart(card, { layer, view, cursor, runKey }) {
  const chart = createCanvasChart(card, { height: HEIGHT, cursor });
  return {
    name: `bands-${layer}`,
    element: card.plot,
    update(state) {
      const tap = view.tap;
      const shown = bandsFigure(columnsIn(state, view), state.variants, layer, tap, state.hello?.percentiles ?? LEVELS);
      const lines = markedEvents(state.events).map((event) => ({ x: event.step, color: eventColor(event.kind) }));
      chart.draw({
        key: `${runKey()}:${tap}`,
        filename: `covshift-layer${layer + 1}-${tap}-percentiles`,
        x: { range: shown.xRange, title: t("axis.step"), steps: true, header: (step) => `${t("status.step")} ${step}` },
        y: { range: shown.yRange, title: t(`tap.${tap}`) },
        panels: shown.panels.map((p, i) => {
          const color = variantColor(p.variant, i);
          return { label: { text: variantName(p.variant), color }, series: variantSeries(shown.x, p, color), lines };
        }),
      });
      setText(card.stats, t(`tap.${tap}`));
      setLegend(card, [
        { label: "15–85%", color: "#777", width: 0, fill: "rgba(90,90,90,0.4)" },
        { label: "1–99%", color: "#777", width: 0, fill: "rgba(90,90,90,0.15)" },
        { label: t("legend.median"), color: "#555", width: 1.6 },
        ...(shown.panels.some((p) => p.typical) ? [{ label: t("legend.typicalUnit"), title: t("legend.typicalUnitWhy"), color: TYPICAL, width: 1.4, dash: "dot" }] : []),
      ]);
    },
    showCursor(step) {
      chart.showCursor(step);
    },
  };
}
