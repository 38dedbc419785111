/** One layer's distribution over time, per variant: a time × bins image on a plain canvas. */

// Drawn with putImageData: a Plotly heatmap of the same size costs ~500× more per redraw.

import { formatNumber, roundSignificant } from "../bounds.js";
import { t } from "../i18n.js";
import { columnsIn, edgesOf } from "../state.js";
import { columnPosition, markedEvents, occupiedBins, tapOf } from "../series.js";
import { eventColor, eventText, variantColor, variantName } from "./plot.js";
import { el, setText, showTooltip, tooltip } from "../dom.js";

// Viridis, sampled: dark = none of the batch in that bin, yellow = the column's fullest bin.
const VIRIDIS = [
  [68, 1, 84], [72, 35, 116], [64, 67, 135], [52, 94, 141], [41, 120, 142], [32, 144, 140],
  [34, 167, 132], [68, 190, 112], [121, 209, 81], [189, 222, 38], [253, 231, 37],
];

/** A 256-entry RGB lookup table interpolated from VIRIDIS. */
export function colormap() {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i += 1) {
    const pos = (i / 255) * (VIRIDIS.length - 1);
    const k = Math.min(VIRIDIS.length - 2, Math.floor(pos));
    const f = pos - k;
    for (let c = 0; c < 3; c += 1) lut[i * 3 + c] = VIRIDIS[k][c] + f * (VIRIDIS[k + 1][c] - VIRIDIS[k][c]);
  }
  return lut;
}

const LUT = colormap();
const OUTSIDE = [228, 26, 28]; // values past the bin range: red rows at the top and bottom

/**
 * Fill `pixels` (RGBA, width = columns, height = hi - lo + 3) for one variant, showing
 * bins lo..hi. Row 0 is the overflow row, the last row the underflow row, and the bins
 * run top (high values) to bottom (low). Each column is scaled by its own fullest bin, so
 * the shape and place of the distribution show at every step even when it narrows; sqrt
 * lifts thin tails into view.
 */
export function paintColumns(pixels, stats, lo, hi) {
  const width = stats.length;
  const shown = hi - lo + 1;
  const height = shown + 2;
  for (let col = 0; col < width; col += 1) {
    const s = stats[col];
    if (!s || !Array.isArray(s.counts)) {
      for (let row = 0; row < height; row += 1) setPixel(pixels, width, col, row, 245, 245, 245);
      continue;
    }
    let max = 0;
    let total = (s.underflow ?? 0) + (s.overflow ?? 0) + (s.nonfinite ?? 0);
    for (const c of s.counts) {
      if (c > max) max = c;
      total += c;
    }
    for (let bin = lo; bin <= hi; bin += 1) {
      const level = max > 0 ? Math.round(255 * Math.sqrt((s.counts[bin] ?? 0) / max)) : 0;
      setPixel(pixels, width, col, hi - bin + 1, LUT[level * 3], LUT[level * 3 + 1], LUT[level * 3 + 2]);
    }
    edgeRow(pixels, width, col, 0, total > 0 ? (s.overflow ?? 0) / total : 0);
    edgeRow(pixels, width, col, height - 1, total > 0 ? (s.underflow ?? 0) / total : 0);
  }
}

function edgeRow(pixels, width, col, row, share) {
  // A quarter of the batch outside the range already shows full red.
  const f = Math.min(1, share * 4);
  setPixel(pixels, width, col, row, 250 + f * (OUTSIDE[0] - 250), 250 + f * (OUTSIDE[1] - 250), 250 + f * (OUTSIDE[2] - 250));
}

function setPixel(pixels, width, col, row, r, g, b) {
  const i = (row * width + col) * 4;
  pixels[i] = r;
  pixels[i + 1] = g;
  pixels[i + 2] = b;
  pixels[i + 3] = 255;
}

/** The key under the heatmaps: the colour scale, the red rows, and what the axes are. */
function heatmapKey() {
  const key = el("p", "heatmap-key");
  const stops = VIRIDIS.map(([r, g, b], i) => `rgb(${r},${g},${b}) ${(100 * i) / (VIRIDIS.length - 1)}%`);
  const scale = el("span", "heatmap-scale");
  scale.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  const outside = el("span", "heatmap-outside");
  outside.style.background = `rgb(${OUTSIDE.join(",")})`;
  const few = el("span", "", { i18n: "heatmap.few" });
  const many = el("span", "", { i18n: "heatmap.many" });
  const red = el("span", "", { i18n: "heatmap.outside" });
  const axes = el("span", "heatmap-axes");
  key.append(few, scale, many, outside, red, axes);
  return { key, axes };
}

export function createHeatmap(card, { layer, view, cursor }) {
  const panels = new Map(); // variant -> {root, canvas, markers, cursor, axisLabels}
  card.plot.classList.add("heatmaps");
  const { key, axes } = heatmapKey();
  card.root.append(key);
  let columns = [];
  let lastState = null;

  function panel(variant, index, first) {
    let p = panels.get(variant);
    if (p) return p;
    const root = el("div", "heatmap-panel");
    const label = el("div", "heatmap-label");
    label.style.color = variantColor(variant, index);
    const box = el("div", "heatmap-box");
    const canvas = el("canvas", "heatmap-canvas");
    const markers = el("div", "heatmap-markers");
    const line = el("div", "cursor-line");
    line.hidden = true;
    const yTop = el("span", "axis-label y-top");
    const yZero = el("span", "axis-label y-zero");
    const yBottom = el("span", "axis-label y-bottom");
    const xLeft = el("span", "axis-label x-left");
    const xRight = el("span", "axis-label x-right");
    box.append(canvas, markers, line, yTop, yZero, yBottom, xLeft, xRight);
    root.append(label, box);
    if (!first) root.classList.add("no-y-labels");
    card.plot.append(root);
    p = { root, label, canvas, markers, line, yTop, yZero, yBottom, xLeft, xRight, variant };
    canvas.addEventListener("mousemove", (event) => hover(p, event));
    canvas.addEventListener("mouseleave", () => {
      tooltip().hidden = true;
      cursor.set(null);
    });
    panels.set(variant, p);
    return p;
  }

  function hover(p, event) {
    if (!lastState || columns.length === 0) return;
    const rect = p.canvas.getBoundingClientRect();
    const col = Math.min(columns.length - 1, Math.max(0, Math.floor(((event.clientX - rect.left) / rect.width) * columns.length)));
    const edges = edgesOf(lastState, p.variant, layer, view.tap);
    const bins = edges.length - 1;
    const [lo, hi] = p.crop ?? [0, bins - 1];
    const row = Math.floor(((event.clientY - rect.top) / rect.height) * (hi - lo + 3));
    const stats = tapOf(columns[col], p.variant, layer, view.tap);
    const step = columns[col].step;
    cursor.set(step);
    // No histogram yet: a column from before a tap change, until the server's history for it.
    if (!stats || !Array.isArray(stats.counts)) {
      tooltip().hidden = true;
      return;
    }
    let total = (stats.underflow ?? 0) + (stats.overflow ?? 0) + (stats.nonfinite ?? 0);
    for (const c of stats.counts) total += c;
    let where;
    let count;
    if (row <= 0) {
      where = `${t("heatmap.over")} (> ${formatNumber(edges[bins])})`;
      count = stats.overflow ?? 0;
    } else if (row >= hi - lo + 2) {
      where = `${t("heatmap.under")} (< ${formatNumber(edges[0])})`;
      count = stats.underflow ?? 0;
    } else {
      const bin = hi - row + 1;
      where = `[${formatNumber(edges[bin])}, ${formatNumber(edges[bin + 1])})`;
      count = stats.counts[bin] ?? 0;
    }
    showTooltip(`${variantName(p.variant)} · ${t("status.step")} ${step} · ${where}: ${total > 0 ? ((100 * count) / total).toFixed(1) : 0}%`, event);
  }

  function drawMarkers(p, events) {
    const n = columns.length;
    const marked = n > 1 ? markedEvents(events) : [];
    while (p.markers.children.length > marked.length) p.markers.lastChild.remove();
    marked.forEach((event, i) => {
      const mark = p.markers.children[i] ?? p.markers.appendChild(document.createElement("div"));
      mark.className = "event-mark";
      mark.style.left = `${(100 * (columnPosition(columns, event.step) + 0.5)) / n}%`;
      mark.style.borderColor = eventColor(event.kind);
      mark.title = `${t("status.step")} ${event.step}: ${eventText(event)}`;
    });
  }

  const widget = {
    name: `heatmap-${layer}`,
    element: card.root,
    reset() {
      for (const p of panels.values()) p.root.remove();
      panels.clear();
      columns = [];
    },
    update(state) {
      setText(axes, t("heatmap.axes", { tap: t(`tap.${view.tap}`) }));
      lastState = state;
      columns = columnsIn(state, view);
      const tap = view.tap;
      // Variants that share their edges share one crop (the same rows, comparable); a
      // watched run's models with their own edges are each cropped to their own bins.
      const shared = !state.hello?.variant_edges;
      const sharedCrop = shared ? occupiedBins(columns, state.variants, layer, tap) : null;
      state.variants.forEach((variant, index) => {
        const p = panel(variant, index, index === 0);
        const edges = edgesOf(state, variant, layer, tap);
        const bins = Math.max(0, edges.length - 1);
        const crop = (shared ? sharedCrop : occupiedBins(columns, [variant], layer, tap)) ?? (bins ? [0, bins - 1] : null);
        p.crop = crop;
        // Panels on shared bins share the first one's value labels; own bins, own labels.
        p.root.classList.toggle("no-y-labels", shared && index > 0);
        const [lo, hi] = crop ?? [0, -1];
        const rows = hi - lo + 3;
        const has = (state.hello?.variants?.[variant]?.taps ?? []).includes(tap);
        setText(p.label, has ? variantName(variant) : t("tap.missing", { variant: variantName(variant), tap: t(`tap.${tap}`) }));
        p.root.classList.toggle("missing", !has);
        const width = Math.max(1, columns.length);
        if (p.canvas.width !== width) p.canvas.width = width;
        if (p.canvas.height !== rows) p.canvas.height = rows;
        if (has && crop && columns.length > 0) {
          const image = p.canvas.getContext("2d").createImageData(width, rows);
          paintColumns(image.data, columns.map((column) => tapOf(column, variant, layer, tap)), lo, hi);
          p.canvas.getContext("2d").putImageData(image, 0, 0);
        } else {
          p.canvas.getContext("2d").clearRect(0, 0, p.canvas.width, p.canvas.height);
        }
        const top = crop ? edges[hi + 1] : null;
        const bottom = crop ? edges[lo] : null;
        // Two significant digits: an end of the shown bins (15.625) reads as 16.
        setText(p.yTop, crop ? formatNumber(roundSignificant(top, 2)) : "");
        setText(p.yBottom, crop ? formatNumber(roundSignificant(bottom, 2)) : "");
        p.yTop.style.top = `${100 / rows}%`;
        p.yBottom.style.top = `${100 - 100 / rows}%`;
        const hasZero = crop && bottom < 0 && top > 0;
        setText(p.yZero, hasZero ? "0" : "");
        p.yZero.style.top = hasZero ? `${(100 * (1 + ((top - 0) / (top - bottom)) * (hi - lo + 1))) / rows}%` : "";
        setText(p.xLeft, columns.length ? String(columns[0].step) : t("heatmap.waiting"));
        setText(p.xRight, columns.length > 1 ? String(columns[columns.length - 1].step) : "");
        drawMarkers(p, state.events);
      });
      for (const [variant, p] of panels) {
        if (!state.variants.includes(variant)) {
          p.root.remove();
          panels.delete(variant);
        }
      }
      setText(card.stats, t(`tap.${tap}`));
    },
    showCursor(step) {
      const n = columns.length;
      for (const p of panels.values()) {
        p.line.hidden = step === null || n < 2;
        if (!p.line.hidden) p.line.style.left = `${(100 * (columnPosition(columns, step) + 0.5)) / n}%`;
      }
    },
  };
  return widget;
}
