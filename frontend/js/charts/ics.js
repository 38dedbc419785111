/** Gradient ICS per variant and layer over steps: ‖G − G′‖₂ (Santurkar et al. 2018, Def. 2.1). */

// How much a layer's gradient changes when only the layers before it take their step. Only
// ICS steps carry it (config ics_every; 0 = off), so without them the card explains how to
// turn it on instead of drawing an empty plot.

import { t } from "../i18n.js";
import { icsOf } from "../state.js";
import { icsLayers, icsMetric } from "../series.js";
import { setLegend } from "./card.js";
import { followHover } from "./cursor.js";
import { baseLayout, eventShapes, placeCursor, react, stepAxis, valueAxis, variantColor, variantName } from "./plot.js";

const DASHES = ["solid", "dot", "dash", "longdash", "dashdot", "longdashdot", "solid", "dot"];

/** The legend label of ICS layer `layer` (0-based) of `layers`: the last is the output layer. */
export function icsLayerLabel(layer, layers) {
  return layer === layers - 1 ? t("legend.output") : t("legend.layer", { n: layer + 1 });
}

export function createIcsChart(card, { cursor, runKey }) {
  let hooked = false;
  const empty = document.createElement("p");
  empty.className = "empty-state";
  empty.dataset.i18n = "ics.empty";
  const frame = card.plot.parentElement;
  frame.before(empty);
  frame.hidden = true;
  return {
    name: "ics",
    element: card.root,
    reset() {},
    update(state) {
      const points = icsOf(state);
      const layers = icsLayers(points);
      empty.textContent = t("ics.empty");
      empty.hidden = layers > 0;
      frame.hidden = layers === 0;
      if (layers === 0) return;
      const traces = [];
      state.variants.forEach((variant, i) => {
        for (let layer = 0; layer < layers; layer += 1) {
          const { x, y } = icsMetric(points, variant, layer, "grad_diff");
          if (x.length === 0) continue;
          traces.push({
            type: "scatter",
            mode: points.length > 40 ? "lines" : "lines+markers",
            x,
            y,
            name: `${variantName(variant)} · ${icsLayerLabel(layer, layers)}`,
            line: { color: variantColor(variant, i), width: 1.2, dash: DASHES[layer % DASHES.length] },
            marker: { size: 3 },
            hovertemplate: "‖G − G′‖ %{y:.4f}",
          });
        }
      });
      const layout = {
        ...baseLayout({ uirevision: runKey(), revision: state.revision, height: 250 }),
        xaxis: stepAxis(),
        yaxis: valueAxis(t("axis.gradDiff"), { rangemode: "tozero" }),
        shapes: eventShapes(state.events, [["x", "y"]]),
      };
      react(card.plot, traces, layout, "covshift-ics");
      setLegend(card, [
        ...state.variants.map((variant, i) => ({ label: variantName(variant), color: variantColor(variant, i), width: 3 })),
        ...Array.from({ length: layers }, (_, layer) => ({ label: icsLayerLabel(layer, layers), color: "#666", width: 1.4, dash: DASHES[layer % DASHES.length] })),
      ]);
      if (!hooked && card.plot.on) {
        followHover(card.plot, cursor);
        hooked = true;
      }
    },
    showCursor(step) {
      if (!frame.hidden) placeCursor(card.plot, card.overlay, step, ["x"]);
    },
  };
}
