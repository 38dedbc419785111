/** Lays out the charts for a run's shape (variants × hidden layers) and hands them to the scheduler. */

import { translatePage } from "./i18n.js";
import { createBandsChart } from "./charts/bands.js";
import { createBnChart } from "./charts/bn.js";
import { createCard } from "./charts/card.js";
import { createClaim } from "./charts/claim.js";
import { createDistributionChart } from "./charts/distribution.js";
import { createDoctor, createDoctorCard, createLayerBadge } from "./charts/doctor.js";
import { createDriftChart } from "./charts/drift.js";
import { createHeatmap } from "./charts/heatmap.js";
import { createIcsChart } from "./charts/ics.js";
import { createAccuracyChart, createLossChart } from "./charts/loss.js";
import { purge } from "./charts/plot.js";
import { normalizedVariants } from "./state.js";


/** A widget under another name (the lesson repeats a layer's charts at the top). */
function renamed(widget, name) {
  return Object.assign(widget, { name });
}

/**
 * What a watched run's layer is called: the user's module names, e.g. "layer1.0.bn1
 * (BatchNorm2d) → relu". Null for the server's own runs (their layers are "hidden layer n").
 */
export function watchedLayerName(hello, layer) {
  if (hello?.config?.source !== "watch") return null;
  for (const variant of Object.values(hello.variants ?? {})) {
    const found = Array.isArray(variant?.layers) ? variant.layers[layer] : null;
    if (found?.name) return `${found.name} (${found.kind})${found.activation ? ` → ${found.activation}` : ""}`;
  }
  return null;
}

export function createDashboard({ intro = null, lessonRoot, overview, layersRoot, measuringRoot, scheduler, view, cursor, runKey }) {
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
    const key = JSON.stringify([state.variants, state.depth, normalizedVariants(state), view.lessonLayer ?? null]);
    if (key === shape) return false;
    clear();
    shape = key;
    const context = { view, cursor, runKey };
    // A watched run: the user's own models, named by their modules, not plain against BN.
    const watched = state.hello?.config?.source === "watch";
    if (intro) intro.dataset.i18n = watched ? "intro.watched" : "intro.body";

    // The lesson first: the last hidden layer, plain against BN, with its claim checked live.
    // (A lesson's run shows the layer the lesson names: view.lessonLayer, 0-based.)
    const lessonLayer = view.lessonLayer;
    const last = Number.isInteger(lessonLayer) && lessonLayer < state.depth ? lessonLayer : Math.max(0, state.depth - 1);
    const lessonContext = { ...context, layer: last };
    // Without a plain network (a run of normalizers only) the panels are not "plain against BN".
    const unpaired = !watched && !state.variants.includes("plain");
    const lessonTitle = watched
      ? { title: "chart.lessonWatched", titleParams: { n: last + 1, name: watchedLayerName(state.hello, last) ?? "" } }
      : { title: unpaired ? "chart.lessonVariants" : "chart.lesson", titleParams: { n: last + 1 } };
    const lessonNote = watched ? "note.lessonWatched" : unpaired ? "note.lessonVariants" : "note.lesson";
    const bands = createCard({ ...lessonTitle, note: lessonNote, className: "lesson-bands" });
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

    const loss = createCard({ title: "chart.loss", note: "note.loss", className: "loss" });
    const accuracy = createCard({ title: "chart.acc", note: "note.acc", className: "accuracy" });
    overview.append(loss.root, accuracy.root);
    add(createLossChart(loss, context), loss);
    add(createAccuracyChart(accuracy, context), accuracy);

    // Further down: internal covariate shift as numbers.
    const drift = createCard({ title: "chart.drift", note: "note.drift", className: "wide" });
    const ics = createCard({ title: "chart.ics", note: "note.ics", className: "wide ics" });
    measuringRoot.append(drift.root, ics.root);
    add(createDriftChart(drift, context), drift);
    add(createIcsChart(ics, context), ics);

    const hasNorm = normalizedVariants(state).length > 0;
    const layerBadges = []; // per hidden layer: the BN doctor's mark in its header
    for (let layer = 0; layer < state.depth; layer += 1) {
      const section = document.createElement("section");
      section.className = "layer";
      section.id = `layer-${layer + 1}`;
      const heading = document.createElement("h2");
      heading.className = "layer-title";
      const name = watchedLayerName(state.hello, layer);
      heading.dataset.i18n = name ? "layer.titleWatched" : "layer.title";
      heading.dataset.i18nParams = JSON.stringify({ n: layer + 1, name });
      const grid = document.createElement("div");
      grid.className = `layer-grid${hasNorm ? "" : " no-bn"}`;
      section.append(heading, grid);
      // Floated beside the title, not inside it: translatePage rewrites the title's whole text.
      const badge = createLayerBadge();
      heading.before(badge);
      layerBadges.push(badge);
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
    // Below drift and ICS: the BN doctor's findings, which also mark the layers' headers.
    const doctor = createDoctorCard();
    measuringRoot.append(doctor.root);
    const doctorWidget = createDoctor(doctor, { runKey, badges: layerBadges });
    widgets.push(doctorWidget);
    scheduler.add(doctorWidget);
    for (const root of [lessonRoot, overview, layersRoot, measuringRoot]) translatePage(root);
    if (intro) translatePage(intro.parentElement ?? intro);
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
