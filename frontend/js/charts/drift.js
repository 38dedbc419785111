/** Drift per layer over time: how far each layer's activation input moved between frames. */

import { formatNumber } from "../bounds.js";
import { columnsOf } from "../state.js";
import { layerOf, stepsOf } from "../series.js";
import { createLayerLinesChart } from "./layerlines.js";

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

export function createDriftChart(card, context) {
  return createLayerLinesChart(
    card,
    {
      name: "drift",
      filename: "covshift-drift",
      yTitle: "axis.w1",
      hovertemplate: "%{y:.3f} (W₁ %{customdata})",
      empty: null,
      read(state) {
        const columns = columnsOf(state);
        const x = stepsOf(columns);
        return {
          layers: state.depth,
          line(variant, layer) {
            const { y, raw } = relativeDrift(columns, variant, layer);
            return { x, y, customdata: raw };
          },
        };
      },
    },
    context,
  );
}
