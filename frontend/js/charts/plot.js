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

/** A hover-only marker trace for events at yValue of a subplot (yaxis in paper units is not
 * hoverable): place it at the bottom, away from Plotly's toolbar at the top right. */
export function eventMarkerTrace(events, xaxis, yaxis, yValue) {
  const marked = markedEvents(events);
  return {
    type: "scatter",
    mode: "markers",
    x: marked.map((e) => e.step),
    y: marked.map(() => yValue),
    xaxis,
    yaxis,
    marker: { symbol: "triangle-up", size: 9, color: marked.map((e) => eventColor(e.kind)) },
    text: marked.map(eventText),
    hovertemplate: "%{text}<extra>step %{x}</extra>",
    showlegend: false,
    cliponaxis: false,
  };
}

const FONT = { family: "system-ui, -apple-system, 'Segoe UI', 'Noto Sans KR', 'NanumGothic', sans-serif", size: 11, color: "#333" };

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
    hoverlabel: { font: { size: 11 }, namelength: -1 },
  };
}

// Measuring tick labels is the costliest part of a redraw (Plotly asks the browser for each
// label's box to decide rotation and overflow). Fixed angles, no overflow check, a handful
// of ticks, and fixed margins instead of automargin (which lays a figure out twice) keep
// an update near half the cost.
const CHEAP_TICKS = { tickangle: 0, ticklabeloverflow: "allow", nticks: 6 };

export function stepAxis(extra = {}) {
  return {
    title: { text: t("axis.step"), standoff: 4, font: { size: 10 } },
    zeroline: false,
    gridcolor: "#eee",
    ...CHEAP_TICKS,
    ...extra,
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

/** Draw or update a chart with new arrays (Plotly.react diffs; uirevision keeps the user's zoom). */
export function react(element, traces, layout, filename) {
  if (!globalThis.Plotly) throw new Error("plotly.js did not load (GET /vendor/plotly.min.js): charts cannot draw");
  const config = { ...PLOT_CONFIG, toImageButtonOptions: { ...PLOT_CONFIG.toImageButtonOptions, filename } };
  return globalThis.Plotly.react(element, traces, layout, config);
}

/** Empty the chart (a new run): Plotly forgets its zoom and traces. */
export function purge(element) {
  if (globalThis.Plotly && element.data) globalThis.Plotly.purge(element);
}

/**
 * The shared step cursor on a Plotly chart: a thin line at `step` over each named x axis,
 * drawn as DOM over the plot (so moving it never redraws the chart). Uses the axes'
 * pixel mapping from the rendered figure.
 */
export function placeCursor(element, overlay, step, axisNames) {
  const full = element._fullLayout;
  const lines = overlay.children;
  let used = 0;
  if (step !== null && full) {
    for (const name of axisNames) {
      const axis = full[name.replace(/^x(\d*)$/, "xaxis$1")];
      if (!axis || typeof axis.l2p !== "function") continue;
      const [lo, hi] = axis.range;
      if (step < Math.min(lo, hi) || step > Math.max(lo, hi)) continue;
      const yaxis = full[(axis.anchor ?? "y").replace(/^y(\d*)$/, "yaxis$1")];
      const line = lines[used] ?? overlay.appendChild(document.createElement("div"));
      line.className = "cursor-line";
      line.style.left = `${axis._offset + axis.l2p(step)}px`;
      line.style.top = `${yaxis ? yaxis._offset : full.margin.t}px`;
      line.style.height = `${yaxis ? yaxis._length : full.height - full.margin.t - full.margin.b}px`;
      line.hidden = false;
      used += 1;
    }
  }
  for (let i = used; i < lines.length; i += 1) lines[i].hidden = true;
}

