/** Lays out the charts for a run's shape (variants × hidden layers) and hands them to the scheduler. */

import { translatePage } from "./i18n.js";
import { createBandsChart } from "./charts/bands.js";
import { createBnChart } from "./charts/bn.js";
import { createCard } from "./charts/card.js";
import { createDistributionChart } from "./charts/distribution.js";
import { createDriftChart } from "./charts/drift.js";
import { createHeatmap } from "./charts/heatmap.js";
import { createIcsChart } from "./charts/ics.js";
import { createLossChart } from "./charts/loss.js";
import { purge } from "./charts/plot.js";
import { normalizedVariants } from "./state.js";


export function createDashboard({ overview, layersRoot, scheduler, view, cursor, runKey }) {
  let shape = null;
  let widgets = [];
  let unsubscribe = () => {};

  function clear() {
    unsubscribe();
    for (const widget of widgets) {
      scheduler.remove(widget);
      if (widget.plot) purge(widget.plot);
    }
    widgets = [];
    overview.replaceChildren();
    layersRoot.replaceChildren();
    shape = null;
  }

  function add(widget, card) {
    widget.plot = card.plot;
    widgets.push(widget);
    scheduler.add(widget);
  }

  /** Build the charts if the run's shape changed; true when it did. */
  function build(state) {
    const key = JSON.stringify([state.variants, state.depth, normalizedVariants(state)]);
    if (key === shape) return false;
    clear();
    shape = key;
    const context = { view, cursor, runKey };

    const loss = createCard({ title: "chart.loss", note: "note.loss", className: "wide" });
    const drift = createCard({ title: "chart.drift", note: "note.drift", className: "wide" });
    const ics = createCard({ title: "chart.ics", note: "note.ics", className: "wide ics" });
    overview.append(loss.root, drift.root, ics.root);
    add(createLossChart(loss, context), loss);
    add(createDriftChart(drift, context), drift);
    add(createIcsChart(ics, context), ics);

    const hasNorm = normalizedVariants(state).length > 0;
    for (let layer = 0; layer < state.depth; layer += 1) {
      const section = document.createElement("section");
      section.className = "layer";
      section.id = `layer-${layer + 1}`;
      const heading = document.createElement("h2");
      heading.className = "layer-title";
      heading.dataset.i18n = "layer.title";
      heading.dataset.i18nParams = JSON.stringify({ n: layer + 1 });
      const grid = document.createElement("div");
      grid.className = `layer-grid${hasNorm ? "" : " no-bn"}`;
      section.append(heading, grid);
      layersRoot.append(section);
      const layerContext = { ...context, layer };
      const dist = createCard({ title: "chart.dist", note: "note.dist", className: "dist" });
      const heat = createCard({ title: "chart.heatmap", note: "note.heatmap", className: "heat" });
      const bands = createCard({ title: "chart.bands", note: "note.bands", className: "bands" });
      grid.append(dist.root, heat.root, bands.root);
      add(createDistributionChart(dist, layerContext), dist);
      add(createHeatmap(heat, layerContext), heat);
      add(createBandsChart(bands, layerContext), bands);
      if (hasNorm) {
        const bn = createCard({ title: "chart.bn", note: "note.bn", className: "bn" });
        grid.append(bn.root);
        add(createBnChart(bn, layerContext), bn);
      }
    }
    translatePage(overview);
    translatePage(layersRoot);
    unsubscribe = cursor.subscribe((step) => {
      for (const widget of widgets) widget.showCursor?.(step);
    });
    return true;
  }

  /** Charts whose content depends on a view setting (tap, channel): redraw them first. */
  function widgetsShowing(prefixes) {
    return widgets.filter((w) => prefixes.some((p) => w.name.startsWith(p)));
  }

  return { build, clear, widgetsShowing, get widgets() { return widgets; } };
}
