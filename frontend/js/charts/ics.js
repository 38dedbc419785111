/** Gradient ICS per variant and layer over steps: ‖G − G′‖₂ (Santurkar et al. 2018, Def. 2.1). */

// How much a layer's gradient changes when only the layers before it take their step. Only
// ICS steps carry it (config ics_every; 0 = off), so without them the card explains how to
// turn it on instead of drawing an empty plot.

import { t } from "../i18n.js";
import { icsOf, windowStart } from "../state.js";
import { icsLayers, icsMetric } from "../series.js";
import { createLayerLinesChart } from "./layerlines.js";

/** The legend label of ICS layer `layer` (0-based) of `layers`: the last is the output layer. */
export function icsLayerLabel(layer, layers) {
  return layer === layers - 1 ? t("legend.output") : t("legend.layer", { n: layer + 1 });
}

export function createIcsChart(card, context) {
  return createLayerLinesChart(
    card,
    {
      name: "ics",
      filename: "covshift-ics",
      yTitle: "axis.gradDiff",
      hovertemplate: "‖G − G′‖ %{y:.4f}",
      // Before the hello nothing is known; a run that measures it says when it comes.
      empty: (state) => {
        if (!state.hello) return "ics.loading";
        if (icsOf(state).length > 0) return "ics.noneInWindow"; // measured, outside the window
        return (state.hello.config?.ics_every ?? 0) > 0 ? "ics.waiting" : "ics.empty";
      },
      layerLabel: icsLayerLabel,
      read(state) {
        const start = windowStart(state, context.view?.window ?? "all");
        const points = icsOf(state).filter((point) => point.step >= start);
        return {
          layers: icsLayers(points),
          markers: points.length <= 40,
          line: (variant, layer) => icsMetric(points, variant, layer, "grad_diff"),
        };
      },
    },
    context,
  );
}
