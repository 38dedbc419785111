/** Drift per layer over time: how far each layer's activation input moved between frames. */

import { formatNumber } from "../bounds.js";
import { t } from "../i18n.js";
import { columnsOf } from "../state.js";
import { layerOf, stepsOf } from "../series.js";
import { setLegend } from "./card.js";
import { followHover } from "./cursor.js";
import { baseLayout, eventShapes, placeCursor, react, stepAxis, valueAxis, variantColor, variantName } from "./plot.js";

const DASHES = ["solid", "dot", "dash", "longdash", "dashdot", "longdashdot", "solid", "dot"];

/**
 * W₁ is in the units of the tap, and BN's activation input is normalized while plain's is
 * not, so raw W₁ would compare a ruler in centimetres with one in metres. Dividing by the
 * distribution's own std puts every layer and variant on the same scale: "moved by this
 * share of its spread". Hover shows the raw W₁ too.
 */
export function relativeDrift(columns, variant, layer) {
  const y = [];
  const raw = [];
  for (const column of columns) {
    const stats = layerOf(column, variant, layer);
    const w1 = stats?.drift?.w1;
    const std = stats?.taps?.act_input?.std;
    const ok = Number.isFinite(w1) && Number.isFinite(std) && std > 0;
    y.push(ok ? w1 / std : null);
    raw.push(Number.isFinite(w1) ? formatNumber(w1) : "—");
  }
  return { y, raw };
}

export function createDriftChart(card, { cursor, runKey }) {
  let hooked = false;
  return {
    name: "drift",
    element: card.root,
    reset() {},
    update(state) {
      const columns = columnsOf(state);
      const x = stepsOf(columns);
      const traces = [];
      state.variants.forEach((variant, i) => {
        for (let layer = 0; layer < state.depth; layer += 1) {
          const { y, raw } = relativeDrift(columns, variant, layer);
          traces.push({
            type: "scatter",
            mode: "lines",
            x,
            y,
            customdata: raw,
            name: `${variantName(variant)} · ${t("legend.layer", { n: layer + 1 })}`,
            line: { color: variantColor(variant, i), width: 1.2, dash: DASHES[layer % DASHES.length] },
            hovertemplate: "%{y:.3f} (W₁ %{customdata})",
          });
        }
      });
      const layout = {
        ...baseLayout({ uirevision: runKey(), revision: state.revision, height: 250 }),
        xaxis: stepAxis(),
        yaxis: valueAxis(t("axis.w1"), { rangemode: "tozero" }),
        shapes: eventShapes(state.events, [["x", "y"]]),
      };
      react(card.plot, traces, layout, "covshift-drift");
      setLegend(card, [
        ...state.variants.map((variant, i) => ({ label: variantName(variant), color: variantColor(variant, i), width: 3 })),
        ...Array.from({ length: state.depth }, (_, layer) => ({ label: t("legend.layer", { n: layer + 1 }), color: "#666", width: 1.4, dash: DASHES[layer % DASHES.length] })),
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
