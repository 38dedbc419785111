/** Drift per layer over time: how far each layer's activation input moved between frames. */

import { formatNumber } from "../bounds.js";
import { t } from "../i18n.js";
import { columnsIn } from "../state.js";
import { layerOf, stepsOf } from "../series.js";
import { createLayerLinesChart } from "./layerlines.js";

/**
 * Each layer's drift on fixed data (the same held-out examples every frame, so only the
 * weights changed): the median over units of each unit's W₁ to the previous frame, divided
 * by the layer's spread (std) so plain and BN compare on one scale. Runs recorded before
 * that measure existed fall back to the batch-to-batch W₁ of the pooled histogram (which is
 * mostly sampling noise; the hover says which). Hover shows the raw W₁ and the sampling
 * floor (two halves of the probe set under the same weights) in the same units.
 */
export function relativeDrift(columns, variant, layer) {
  const y = [];
  const raw = [];
  for (const column of columns) {
    const stats = layerOf(column, variant, layer);
    const fixed = stats?.drift_fixed;
    if (fixed) {
      const ok = Number.isFinite(fixed.unit_median) && Number.isFinite(fixed.std) && fixed.std > 0;
      y.push(ok ? fixed.unit_median / fixed.std : null);
      const floor = Number.isFinite(fixed.floor) && fixed.std > 0 ? formatNumber(fixed.floor / fixed.std) : "—";
      raw.push(`${Number.isFinite(fixed.unit_median) ? formatNumber(fixed.unit_median) : "—"}; ${t("drift.floor", { floor })}`);
      continue;
    }
    const w1 = stats?.drift?.w1;
    const std = stats?.taps?.act_input?.std;
    const ok = Number.isFinite(w1) && Number.isFinite(std) && std > 0;
    y.push(ok ? w1 / std : null);
    raw.push(Number.isFinite(w1) ? `${formatNumber(w1)}; ${t("drift.batchToBatch")}` : "—");
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
        const columns = columnsIn(state, context.view);
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
