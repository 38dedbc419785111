/** One line per variant and layer over steps (colour = variant, dash = layer): drift, gradient ICS. */

import { t } from "../i18n.js";
import { setLegend } from "./card.js";
import { followHover } from "./cursor.js";
import { baseLayout, eventShapes, placeCursor, react, stepAxis, valueAxis, variantColor, variantName } from "./plot.js";

const DASHES = ["solid", "dot", "dash", "longdash", "dashdot", "longdashdot", "solid", "dot"];

/**
 * spec: {name, filename, yTitle (i18n key), hovertemplate, empty (i18n key shown while there
 * is nothing to draw, a function of the state giving one, or null), read(state) -> {layers, line(variant, layer) -> {x, y,
 * customdata?}, markers}, layerLabel(layer, layers)}.
 */
export function createLayerLinesChart(card, spec, { cursor, runKey }) {
  let hooked = false;
  const frame = card.plot.parentElement;
  let empty = null;
  if (spec.empty) {
    empty = document.createElement("p");
    empty.className = "empty-state";
    if (typeof spec.empty === "string") empty.dataset.i18n = spec.empty;
    frame.before(empty);
    frame.hidden = true;
  }
  const layerLabel = spec.layerLabel ?? ((layer) => t("legend.layer", { n: layer + 1 }));
  return {
    name: spec.name,
    element: card.root,
    reset() {},
    update(state) {
      const { layers, line, markers = false } = spec.read(state);
      if (empty) {
        const key = typeof spec.empty === "function" ? spec.empty(state) : spec.empty;
        empty.textContent = t(key, { every: state.hello?.config?.ics_every ?? "" });
        empty.hidden = layers > 0;
        frame.hidden = layers === 0;
        if (layers === 0) return;
      }
      const traces = [];
      state.variants.forEach((variant, i) => {
        for (let layer = 0; layer < layers; layer += 1) {
          const { x, y, customdata } = line(variant, layer);
          if (x.length === 0) continue;
          traces.push({
            type: "scatter",
            mode: markers ? "lines+markers" : "lines",
            x,
            y,
            customdata,
            name: `${variantName(variant)} · ${layerLabel(layer, layers)}`,
            line: { color: variantColor(variant, i), width: 1.2, dash: DASHES[layer % DASHES.length] },
            marker: { size: 3 },
            hovertemplate: spec.hovertemplate,
          });
        }
      });
      const layout = {
        ...baseLayout({ uirevision: runKey(), revision: state.revision, height: 250 }),
        xaxis: stepAxis(),
        yaxis: valueAxis(t(spec.yTitle), { rangemode: "tozero" }),
        shapes: eventShapes(state.events, [["x", "y"]]),
      };
      react(card.plot, traces, layout, spec.filename);
      setLegend(card, [
        ...state.variants.map((variant, i) => ({ label: variantName(variant), color: variantColor(variant, i), width: 3 })),
        ...Array.from({ length: layers }, (_, layer) => ({ label: layerLabel(layer, layers), color: "#666", width: 1.4, dash: DASHES[layer % DASHES.length] })),
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
