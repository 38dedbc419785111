/** One layer's current distribution of the chosen tap, every variant overlaid on the same bins. */

import { t } from "../i18n.js";
import { columnsOf, edgesOf } from "../state.js";
import { binCentres, extent, histogramShares, layerOf, occupiedBins, tapOf } from "../series.js";
import { createCanvasChart } from "./canvas.js";
import { g3 } from "./figure.js";
import { padded } from "./ticks.js";
import { setLegend } from "./card.js";
import { variantColor, variantName, withAlpha } from "./plot.js";
import { setText } from "../dom.js";

const percent = (share) => `${(100 * share).toFixed(share > 0 && share < 0.01 ? 1 : 0)}%`;

/** Share per bin divided by the bin's width: a density, comparable across different bins. */
export function densities(shares, edges) {
  return shares.map((share, i) => share / (edges[i + 1] - edges[i]));
}

export function createDistributionChart(card, { layer, view, runKey }) {
  const chart = createCanvasChart(card, { height: 230 });
  return {
    name: `dist-${layer}`,
    element: card.root,
    reset() {},
    update(state) {
      const column = state.latest;
      const tap = view.tap;
      // The part of the fixed bins the run has used so far: a steady axis, so drift shows.
      // Each variant's own bins (a watched run's models have their own edges), one range.
      let range = null;
      for (const variant of state.variants) {
        const edges = edgesOf(state, variant, layer, tap);
        const used = occupiedBins(columnsOf(state), [variant], layer, tap, 2);
        if (!used) continue;
        const [lo, hi] = [edges[used[0]], edges[used[1] + 1]];
        range = range ? [Math.min(range[0], lo), Math.max(range[1], hi)] : [lo, hi];
      }
      const ownEdges = Boolean(state.hello?.variant_edges);
      const series = [];
      const notes = [];
      state.variants.forEach((variant, i) => {
        const shares = histogramShares(tapOf(column, variant, layer, tap));
        if (!shares) return;
        const color = variantColor(variant, i);
        const edges = edgesOf(state, variant, layer, tap);
        series.push({
          x: binCentres(edges),
          // Models with their own bins: share per unit of the value (bins of different widths
          // would make one model's share per bin look small); one shared set: share per bin.
          y: ownEdges ? densities(shares.shares, edges) : shares.shares,
          name: variantName(variant),
          color,
          width: 1.5,
          shape: "hvh",
          fill: "tozero",
          fillColor: withAlpha(color, 0.22),
          format: ownEdges ? g3 : (share) => `${(100 * share).toFixed(1)}%`,
        });
        const stats = layerOf(column, variant, layer);
        const parts = [];
        const outside = shares.underflow + shares.overflow + shares.nonfinite;
        if (typeof stats?.saturated === "number") parts.push(`${t("stat.saturated")} ${percent(stats.saturated)}`);
        if (typeof stats?.dead === "number") parts.push(`${t("stat.dead")} ${percent(stats.dead)}`);
        if (outside > 0) parts.push(`${t("stat.outside")} ${percent(outside)}`);
        if (parts.length) notes.push(`${variantName(variant)}: ${parts.join(", ")}`);
      });
      setText(card.stats, column ? `${t("status.step")} ${column.step}${notes.length ? " · " + notes.join(" · ") : ""}` : "");
      const top = extent(series.map((s) => s.y))?.[1] ?? 0;
      const title = t(`tap.${tap}`);
      chart.draw({
        key: `${runKey()}:${tap}`,
        filename: `covshift-layer${layer + 1}-${tap}-distribution`,
        x: { range: range ?? padded(extent(series.map((s) => s.x))), title, header: (value) => `${title} ${g3(value)}` },
        // From zero, as Plotly's rangemode "tozero", 5% above the tallest bin.
        y: { range: [0, top > 0 ? top * 1.05 : 1], title: t(ownEdges ? "axis.density" : "axis.share"), percent: !ownEdges },
        panels: [{ series }],
      });
      setLegend(
        card,
        state.variants.map((variant, i) => ({ label: variantName(variant), color: variantColor(variant, i), width: 1.5, fill: withAlpha(variantColor(variant, i), 0.22) })),
      );
    },
  };
}
