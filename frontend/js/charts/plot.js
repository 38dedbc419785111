/** What every Plotly chart shares: colours, base layout, event markers, the step cursor, react. */

import { formatNumber } from "../bounds.js";
import { t } from "../i18n.js";
import { variantsOf } from "../rules.js";
import { markedEvents } from "../series.js";

// Each variant's colour is the server's (covshift/variants.py), the same in the reports.
const EXTRA_COLORS = ["#17becf", "#7f7f7f", "#8c564b", "#e377c2"];

export function variantColor(name, index = 0) {
  return variantsOf()[name]?.color ?? EXTRA_COLORS[index % EXTRA_COLORS.length];
}

/** rgba() of a #rrggbb colour. */
export function withAlpha(hex, alpha) {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

/** A variant's short name in the page's language (the hello's label is English only). */
export function variantName(name) {
  const key = `variant.${name}`;
  const text = t(key);
  return text === key ? (variantsOf()[name]?.label ?? name) : text;
}

// The marker colour of each kind of event, and its line in the page's key (view.js).
export const EVENT_COLORS = { lr: "#7b3294", batch_size: "#008080", bn_momentum: "#666666", diverged: "#d62728", skipped: "#b15928" };

export function eventColor(kind) {
  return EVENT_COLORS[kind] ?? "#666666";
}

/** One line of text for an event, in the page's language. */
export function eventText(event) {
  const show = (value) => (value === null || value === undefined ? t("event.cumulative") : formatNumber(value));
  switch (event.kind) {
    case "lr":
    case "batch_size":
    case "bn_momentum":
      return t(`event.${event.kind}`, { previous: show(event.previous), value: show(event.value) });
    case "diverged":
      return t("event.diverged", { variant: variantName(event.variant ?? "?") });
    case "skipped":
      return t("event.skipped", { variants: (event.variants ?? []).map(variantName).join(", ") });
    default:
      return event.kind;
  }
}

/**
 * Vertical dashed lines at each marked event, on each of the given x axes ("x", "x2", …),
 * spanning that subplot's height (its y axis' domain).
 */
export function eventShapes(events, axes) {
  const shapes = [];
  for (const event of markedEvents(events)) {
    for (const [xaxis, yaxis] of axes) {
      shapes.push({
        type: "line",
        xref: xaxis,
        yref: `${yaxis} domain`,
        x0: event.step,
        x1: event.step,
        y0: 0,
        y1: 1,
        line: { color: eventColor(event.kind), width: 1.2, dash: "dash" },
        layer: "above",
      });
    }
  }
  return shapes;
}

export const FONT = { family: "system-ui, -apple-system, 'Segoe UI', 'Noto Sans KR', 'NanumGothic', sans-serif", size: 11, color: "#333" };

/** The layout every chart starts from; `revision` makes Plotly redraw, `uirevision` keeps zoom. */
export function baseLayout({ uirevision, height = 230, revision = 0, margin = {} }) {
  return {
    uirevision,
    datarevision: revision,
    height,
    autosize: true,
    margin: { l: 56, r: 12, t: 20, b: 38, ...margin },
    font: FONT,
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#ffffff",
    // Legends are HTML (card.js setLegend): Plotly's costs milliseconds on every redraw.
    showlegend: false,
    hovermode: "x unified",
    // A unified hover box takes the paper colour, transparent here: give it its own.
    hoverlabel: { font: { size: 11 }, namelength: -1, bgcolor: "rgba(255,255,255,0.94)", bordercolor: "#bbb" },
  };
}

// Measuring tick labels is the costliest part of a redraw (Plotly asks the browser for each
// label's box to decide rotation and overflow). Fixed angles, no overflow check, a handful
// of ticks, and fixed margins instead of automargin (which lays a figure out twice) keep
// an update near half the cost.
const CHEAP_TICKS = { tickangle: 0, ticklabeloverflow: "allow", nticks: 6 };

/**
 * A step axis. One that spans part of the width (a panel of side-by-side subplots) gets
 * fewer ticks, in proportion, so labels like "12000" never run into each other.
 */
export function stepAxis(extra = {}) {
  const domain = extra.domain ?? [0, 1];
  const nticks = extra.nticks ?? Math.max(2, Math.round(CHEAP_TICKS.nticks * (domain[1] - domain[0])));
  return {
    title: { text: t("axis.step"), standoff: 4, font: { size: 10 } },
    zeroline: false,
    gridcolor: "#eee",
    ...CHEAP_TICKS,
    ...extra,
    nticks,
  };
}

export function valueAxis(title, extra = {}) {
  return { title: { text: title, standoff: 4, font: { size: 10 } }, zeroline: false, gridcolor: "#eee", ...CHEAP_TICKS, ...extra };
}

/** A label above a subplot (variant name, metric name), in paper coordinates of its x domain. */
export function subplotLabel(text, xaxis, color = "#333") {
  return {
    text,
    xref: `${xaxis} domain`,
    yref: "paper",
    x: 0,
    y: 1,
    xanchor: "left",
    yanchor: "bottom",
    showarrow: false,
    font: { size: 11, color },
  };
}

export const PLOT_CONFIG = {
  displaylogo: false,
  responsive: true,
  scrollZoom: false,
  modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines", "hoverClosestCartesian", "hoverCompareCartesian"],
  toImageButtonOptions: { format: "png", scale: 2 },
};

// plotly.js (1.2 MB, ~0.3 s to start on a slow machine) loads when a chart first needs it:
// the first screen's charts are canvases, so a new tab shows the lesson without waiting for
// it. A chart asked to draw before it has come draws its newest figure once it has.
const PLOTLY_URL = "/vendor/plotly-basic.min.js";
const waiting = new Map(); // element -> [traces, layout, config], the newest asked for
let loading = null; // plotly.js's script, once asked for
let failed = null; // why it did not load

function loadPlotly() {
  loading ??= new Promise((resolve, reject) => {
    const script = Object.assign(document.createElement("script"), { src: PLOTLY_URL });
    script.addEventListener("load", resolve);
    script.addEventListener("error", () => reject(new Error(`plotly.js did not load (GET ${PLOTLY_URL}): charts cannot draw`)));
    document.head.append(script);
  });
  return loading;
}

function drawWaiting() {
  for (const [element, args] of waiting) globalThis.Plotly.react(element, ...args);
  waiting.clear();
}

/** Draw or update a chart with new arrays (Plotly.react diffs; uirevision keeps the user's zoom). */
export function react(element, traces, layout, filename) {
  const config = { ...PLOT_CONFIG, toImageButtonOptions: { ...PLOT_CONFIG.toImageButtonOptions, filename } };
  if (globalThis.Plotly) return globalThis.Plotly.react(element, traces, layout, config);
  if (failed) throw failed;
  if (waiting.size === 0) {
    loadPlotly().then(drawWaiting, (error) => {
      failed = error;
      waiting.clear();
      console.error(error);
    });
  }
  waiting.set(element, [traces, layout, config]);
  return null;
}

/** Empty the chart (a new run): Plotly forgets its zoom and traces. */
export function purge(element) {
  waiting.delete(element);
  if (globalThis.Plotly && element.data) globalThis.Plotly.purge(element);
}

/**
 * Where a step falls on a chart, in pixels of the chart's element, from documented layout
 * fields only: the margins and domains this page sets (fixed margins, no automargin), the
 * element's width and the x range Plotly writes back into `element.layout` after drawing.
 * [{left, top, height}] per named x axis whose range holds the step (pure).
 */
export function cursorPlaces(layout, width, step, axisNames) {
  if (step === null || !layout) return [];
  const margin = { l: 80, r: 80, t: 100, b: 80, ...(layout.margin ?? {}) };
  const height = layout.height ?? 450;
  const plotWidth = width - margin.l - margin.r;
  const plotHeight = height - margin.t - margin.b;
  const places = [];
  for (const name of axisNames) {
    const axis = layout[name.replace(/^x(\d*)$/, "xaxis$1")];
    const range = axis?.range;
    if (!Array.isArray(range) || range.length !== 2 || range[0] === range[1]) continue;
    const [lo, hi] = range;
    if (step < Math.min(lo, hi) || step > Math.max(lo, hi)) continue;
    const [d0, d1] = axis.domain ?? [0, 1];
    const yaxis = layout[(axis.anchor ?? "y").replace(/^y(\d*)$/, "yaxis$1")];
    const [y0, y1] = yaxis?.domain ?? [0, 1];
    places.push({
      left: margin.l + plotWidth * (d0 + ((step - lo) / (hi - lo)) * (d1 - d0)),
      top: margin.t + plotHeight * (1 - y1),
      height: plotHeight * (y1 - y0),
    });
  }
  return places;
}

/**
 * The shared step cursor on a Plotly chart: a thin line at `step` over each named x axis,
 * drawn as DOM over the plot (so moving it never redraws the chart).
 */
export function placeCursor(element, overlay, step, axisNames) {
  drawCursor(overlay, cursorPlaces(element.layout, element.clientWidth, step, axisNames));
}

/** The cursor's lines in a chart's overlay, one per place (cursorPlaces), the rest hidden. */
export function drawCursor(overlay, places) {
  const lines = overlay.children;
  places.forEach((place, i) => {
    const line = lines[i] ?? overlay.appendChild(document.createElement("div"));
    line.className = "cursor-line";
    line.style.left = `${place.left}px`;
    line.style.top = `${place.top}px`;
    line.style.height = `${place.height}px`;
    line.hidden = false;
  });
  for (let i = places.length; i < lines.length; i += 1) lines[i].hidden = true;
}
