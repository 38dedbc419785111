/** Lays out the charts for a run's shape (variants × hidden layers) and hands them to the scheduler. */

import { translatePage } from "./i18n.js";
import { createBandsChart } from "./charts/bands.js";
import { createBnChart } from "./charts/bn.js";
import { createCard } from "./charts/card.js";
import { createClaim } from "./charts/claim.js";
import { createDistributionChart } from "./charts/distribution.js";
import { createDriftChart } from "./charts/drift.js";
import { createHeatmap } from "./charts/heatmap.js";
import { createIcsChart } from "./charts/ics.js";
import { createLossChart } from "./charts/loss.js";
import { purge } from "./charts/plot.js";
import { normalizedVariants } from "./state.js";


/** A widget under another name (the lesson repeats a layer's charts at the top). */
function renamed(widget, name) {
  return Object.assign(widget, { name });
}

export function createDashboard({ lessonRoot, overview, layersRoot, measuringRoot, scheduler, view, cursor, runKey }) {
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
    lessonRoot.replaceChildren();
    overview.replaceChildren();
    layersRoot.replaceChildren();
    measuringRoot.replaceChildren();
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

    // The lesson first: the last hidden layer, plain against BN, with its claim checked live.
    const last = Math.max(0, state.depth - 1);
    const lessonContext = { ...context, layer: last };
    const bands = createCard({ title: "chart.lesson", note: "note.lesson", className: "lesson-bands", titleParams: { n: last + 1 } });
    const dist = createCard({ title: "chart.dist", note: "note.lessonDist", className: "lesson-dist" });
    const claim = document.createElement("p");
    claim.className = "claim";
    claim.setAttribute("aria-live", "polite");
    bands.root.append(claim);
    lessonRoot.append(bands.root, dist.root);
    add(renamed(createBandsChart(bands, lessonContext), "lesson-bands"), bands);
    add(renamed(createDistributionChart(dist, lessonContext), "lesson-dist"), dist);
    const claimWidget = createClaim(claim, lessonContext);
    widgets.push(claimWidget);
    scheduler.add(claimWidget);

    const loss = createCard({ title: "chart.loss", note: "note.loss", className: "wide" });
    overview.append(loss.root);
    add(createLossChart(loss, context), loss);

    // Further down: internal covariate shift as numbers.
    const drift = createCard({ title: "chart.drift", note: "note.drift", className: "wide" });
    const ics = createCard({ title: "chart.ics", note: "note.ics", className: "wide ics" });
    measuringRoot.append(drift.root, ics.root);
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
    for (const root of [lessonRoot, overview, layersRoot, measuringRoot]) translatePage(root);
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
