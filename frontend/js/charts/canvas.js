/** Charts drawn on a plain canvas, as the heatmaps are: the live charts of the first screen. */

/*
 * As Plotly figures each redraw cost 30–60 ms on a CPU four times slower than a desktop's
 * (most of it Plotly's own defaults, axes and text measuring, whatever the data); a canvas
 * draws the same lines in a few. A figure is plain data (panels side by side on one value
 * axis, each with its series, event lines and marks); paintFigure draws it, and
 * createCanvasChart gives it a card's plot: hover, the shared step cursor, a PNG download.
 */

import { el, showTooltip, tooltip } from "../dom.js";
import { nearestIndex } from "../series.js";
import { DASH } from "./card.js";
import { cursorPlaces, drawCursor, FONT } from "./plot.js";

// The page's Plotly charts' margins and fonts, so every card lines up.
export const MARGIN = { l: 56, r: 12, t: 20, b: 38 };
const GAP = 0.05;
const TICK_FONT = `${FONT.size}px ${FONT.family}`;
const TITLE_FONT = `10px ${FONT.family}`;
const GRID = "#eee";
// At most this many ticks on the value axis, and on a step axis spanning the whole width.
const TICKS = 6;

/** x-axis domains for n side-by-side panels. */
export function panelDomains(n) {
  const width = (1 - GAP * (n - 1)) / n;
  return Array.from({ length: n }, (_, i) => [i * (width + GAP), i * (width + GAP) + width]);
}

/** The smallest of 1, 2, 5 × 10ⁿ at least `rough` (an axis' tick spacing, as Plotly picks it). */
export function niceStep(rough) {
  if (!(rough > 0) || !Number.isFinite(rough)) return 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 5]) if (m * power >= rough * (1 - 1e-9)) return m * power;
  return 10 * power;
}

/** Tick values on [lo, hi]: multiples of a 1-2-5 step, about `count` of them at most. */
export function linearTicks(lo, hi, count) {
  if (!(hi > lo)) return { step: 1, values: Number.isFinite(lo) ? [lo] : [] };
  return ticksOfStep(lo, hi, niceStep((hi - lo) / Math.max(1, count)));
}

/** The multiples of `step` on [lo, hi]. */
export function ticksOfStep(lo, hi, step) {
  const values = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1) values.push(Number((k * step).toPrecision(12)));
  return { step, values };
}

const MINUS = "\u2212";

/**
 * A tick's label as Plotly writes a linear axis' by default: as many decimals as the step
 * needs, a true minus sign, and thousands as "k" once the step is a thousand or more
 * (500, 1000, 1500; but 1k, 2k, 20k).
 */
export function tickLabel(value, step) {
  const thousands = step >= 1000;
  const shown = thousands ? value / 1000 : value;
  const unit = thousands ? step / 1000 : step;
  const decimals = Math.max(0, -Math.floor(Math.log10(unit) + 1e-9));
  const text = Math.abs(shown).toFixed(decimals);
  if (Number(text) === 0) return "0";
  return `${shown < 0 ? MINUS : ""}${text}${thousands ? "k" : ""}`;
}

/**
 * Ticks on [lo, hi] whose labels, `span` pixels apart end to end, never touch: at most
 * `count`, fewer (a wider 1-2-5 step) where labels measured by `measure` would meet.
 * `label(value, step)` writes them (tickLabel by default).
 */
export function spacedTicks(lo, hi, count, span, measure, label = tickLabel) {
  let { step, values } = linearTicks(lo, hi, count);
  for (let tries = 0; tries < 8; tries += 1) {
    const labels = values.map((v) => label(v, step));
    const widths = labels.map(measure);
    const px = (v) => ((v - lo) / (hi - lo)) * span;
    const fits = values.every((v, i) => i === 0 || px(v) - px(values[i - 1]) >= (widths[i] + widths[i - 1]) / 2 + 8);
    if (fits || values.length <= 1) return { values, labels };
    ({ step, values } = ticksOfStep(lo, hi, niceStep(step * 1.01)));
  }
  return { values: [], labels: [] };
}

/** A share as a percentage label ("20%", "2.5%"), with the decimals its tick step needs. */
export function percentLabel(value, step) {
  return `${tickLabel(value * 100, step * 100)}%`;
}

/** [lo, hi] with `pad` of its span on each side; a single value gets ±1 (or ±10% of it). */
export function padded(range, pad = 0.05) {
  if (!range) return [0, 1];
  const [lo, hi] = range;
  if (hi > lo) return [lo - pad * (hi - lo), hi + pad * (hi - lo)];
  const half = lo === 0 ? 1 : Math.abs(lo) * 0.1;
  return [lo - half, lo + half];
}

/** The runs of indices [start, end) where both bounds of a band have a value. */
export function bandRuns(lower, upper) {
  const runs = [];
  let start = -1;
  for (let i = 0; i <= lower.length; i += 1) {
    const has = i < lower.length && lower[i] !== null && upper[i] !== null && lower[i] !== undefined && upper[i] !== undefined;
    if (has && start < 0) start = i;
    if (!has && start >= 0) {
      runs.push([start, i]);
      start = -1;
    }
  }
  return runs;
}

/** The figure's layout in Plotly's terms (margins, domains, ranges): what cursorPlaces reads. */
export function figureLayout(figure) {
  const layout = { margin: MARGIN, height: figure.height, yaxis: { domain: [0, 1] } };
  panelDomains(Math.max(1, figure.panels.length)).forEach((domain, i) => {
    layout[i === 0 ? "xaxis" : `xaxis${i + 1}`] = { range: figure.x.range, domain, anchor: "y" };
  });
  return layout;
}

function axisNames(figure) {
  return figure.panels.map((_, i) => (i === 0 ? "x" : `x${i + 1}`));
}

/** Where each panel's plot area lies in a chart `width` pixels wide. */
function panelBoxes(figure, width) {
  const plotWidth = width - MARGIN.l - MARGIN.r;
  return panelDomains(Math.max(1, figure.panels.length)).map(([d0, d1]) => ({
    left: MARGIN.l + plotWidth * d0,
    right: MARGIN.l + plotWidth * d1,
    top: MARGIN.t,
    bottom: figure.height - MARGIN.b,
    share: d1 - d0,
  }));
}

/** The panel and x value under a point of the chart (pure): {panel, x}, or null outside. */
export function pointAt(figure, width, px, py) {
  const boxes = panelBoxes(figure, width);
  const panel = boxes.findIndex((b) => px >= b.left && px <= b.right && py >= b.top && py <= b.bottom);
  if (panel < 0 || panel >= figure.panels.length) return null;
  const { left, right } = boxes[panel];
  const [x0, x1] = figure.x.range;
  return { panel, x: x0 + ((px - left) / (right - left)) * (x1 - x0) };
}

/** y value -> pixel, on a linear or a log axis. */
function yScale(axis, top, bottom) {
  const f = axis.log ? Math.log10 : (v) => v;
  const [lo, hi] = axis.range.map(f);
  return (v) => top + ((hi - f(v)) / (hi - lo)) * (bottom - top);
}

function dash(name) {
  return name && DASH[name] ? DASH[name].split(" ").map(Number) : [];
}

/** Stroke a line through (x, y) points, broken where y is null; "hvh": steps between. */
export function strokeLine(ctx, xs, ys, toX, toY, shape = "linear") {
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < xs.length; i += 1) {
    if (ys[i] === null || ys[i] === undefined) {
      pen = false;
      continue;
    }
    const x = toX(xs[i]);
    const y = toY(ys[i]);
    if (!pen) ctx.moveTo(shape === "hvh" ? toX(xs[i] - halfGap(xs, i)) : x, y);
    else if (shape === "hvh") {
      const mid = (toX(xs[i - 1]) + x) / 2;
      ctx.lineTo(mid, toY(ys[i - 1]));
      ctx.lineTo(mid, y);
    }
    ctx.lineTo(x, y);
    const last = i === xs.length - 1 || ys[i + 1] === null || ys[i + 1] === undefined;
    if (shape === "hvh" && last) ctx.lineTo(toX(xs[i] + halfGap(xs, i)), y);
    pen = true;
  }
  ctx.stroke();
}

/** Half the distance to the neighbouring x (a step line's first and last half-steps). */
function halfGap(xs, i) {
  if (xs.length < 2) return 0;
  return (i > 0 ? xs[i] - xs[i - 1] : xs[1] - xs[0]) / 2;
}

/** Fill between two lines, one closed shape per run where both have a value. */
function fillBand(ctx, xs, lower, upper, toX, toY) {
  ctx.beginPath();
  for (const [start, end] of bandRuns(lower, upper)) {
    ctx.moveTo(toX(xs[start]), toY(lower[start]));
    for (let i = start + 1; i < end; i += 1) ctx.lineTo(toX(xs[i]), toY(lower[i]));
    for (let i = end - 1; i >= start; i -= 1) ctx.lineTo(toX(xs[i]), toY(upper[i]));
    ctx.closePath();
  }
  ctx.fill();
}

/** Fill under a step line ("hvh") down to zero. */
function fillUnderSteps(ctx, xs, ys, toX, toY) {
  const zero = toY(0);
  ctx.beginPath();
  for (const [start, end] of bandRuns(ys, ys)) {
    ctx.moveTo(toX(xs[start] - halfGap(xs, start)), zero);
    for (let i = start; i < end; i += 1) {
      const left = i === start ? toX(xs[i] - halfGap(xs, i)) : (toX(xs[i - 1]) + toX(xs[i])) / 2;
      const right = i === end - 1 ? toX(xs[i] + halfGap(xs, i)) : (toX(xs[i]) + toX(xs[i + 1])) / 2;
      ctx.lineTo(left, toY(ys[i]));
      ctx.lineTo(right, toY(ys[i]));
    }
    ctx.lineTo(toX(xs[end - 1] + halfGap(xs, end - 1)), zero);
    ctx.closePath();
  }
  ctx.fill();
}

function paintSeries(ctx, s, toX, toY) {
  if (s.fill === "band") {
    ctx.fillStyle = s.fillColor;
    fillBand(ctx, s.x, s.y0, s.y, toX, toY);
    return;
  }
  if (s.fill === "tozero") {
    ctx.fillStyle = s.fillColor;
    fillUnderSteps(ctx, s.x, s.y, toX, toY);
  }
  ctx.strokeStyle = s.color;
  ctx.lineWidth = s.width ?? 1.5;
  ctx.lineJoin = "round";
  ctx.setLineDash(dash(s.dash).map((d) => d * Math.max(1, (s.width ?? 1.5) / 1.5)));
  strokeLine(ctx, s.x, s.y, toX, toY, s.shape);
  ctx.setLineDash([]);
  if (s.dots) {
    ctx.fillStyle = s.color;
    ctx.beginPath();
    s.x.forEach((x, i) => {
      if (s.y[i] === null) return;
      ctx.moveTo(toX(x) + 2.5, toY(s.y[i]));
      ctx.arc(toX(x), toY(s.y[i]), 2.5, 0, 2 * Math.PI);
    });
    ctx.fill();
  }
}

/** The y axis' ticks: the figure's own (a log axis') or 1-2-5 ones that fit its height. */
function yTicksOf(axis, height) {
  if (axis.ticks) return axis.ticks;
  const label = axis.percent ? percentLabel : tickLabel;
  return spacedTicks(axis.range[0], axis.range[1], TICKS, height, () => FONT.size * 1.6, label);
}

/**
 * Paint a whole figure on ctx (CSS pixels, `width` wide): panels, series, axes, labels.
 * Returns where the tick labels went: {x: per panel [{text, left, right}], y: [{text, y}]}.
 */
export function paintFigure(ctx, width, figure) {
  const drawn = { x: [], y: [] };
  const boxes = panelBoxes(figure, width);
  const { top, bottom } = boxes[0];
  const [x0, x1] = figure.x.range;
  const toY = yScale(figure.y, top, bottom);
  ctx.font = TICK_FONT;
  const measure = (text) => ctx.measureText(text).width;
  const yTicks = yTicksOf(figure.y, bottom - top);
  ctx.fillStyle = FONT.color;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  yTicks.values.forEach((v, i) => {
    ctx.fillText(yTicks.labels[i], MARGIN.l - 4, toY(v));
    drawn.y.push({ text: yTicks.labels[i], y: toY(v) });
  });
  ctx.save();
  ctx.font = TITLE_FONT;
  ctx.textAlign = "center";
  ctx.translate(12, (top + bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(figure.y.title, 0, 0);
  ctx.restore();
  figure.panels.forEach((panel, i) => {
    const box = boxes[i];
    const toX = (x) => box.left + ((x - x0) / (x1 - x0)) * (box.right - box.left);
    const xTicks = spacedTicks(x0, x1, Math.max(2, Math.round(TICKS * box.share)), box.right - box.left, measure);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(box.left, top, box.right - box.left, bottom - top);
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const v of yTicks.values) {
      const y = Math.round(toY(v)) + 0.5;
      ctx.moveTo(box.left, y);
      ctx.lineTo(box.right, y);
    }
    for (const v of xTicks.values) {
      const x = Math.round(toX(v)) + 0.5;
      ctx.moveTo(x, top);
      ctx.lineTo(x, bottom);
    }
    ctx.stroke();
    ctx.save();
    ctx.beginPath();
    ctx.rect(box.left, top, box.right - box.left, bottom - top);
    ctx.clip();
    for (const s of panel.series) paintSeries(ctx, s, toX, toY);
    ctx.lineWidth = 1.2;
    ctx.setLineDash(dash("dash"));
    for (const line of panel.lines ?? []) {
      ctx.strokeStyle = line.color;
      ctx.beginPath();
      ctx.moveTo(toX(line.x), top);
      ctx.lineTo(toX(line.x), bottom);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    ctx.restore();
    for (const mark of panel.marks ?? []) {
      if (mark.x < x0 || mark.x > x1) continue;
      const [x, y] = [toX(mark.x), toY(mark.y)];
      ctx.fillStyle = mark.color;
      ctx.beginPath();
      ctx.moveTo(x, y - 4.5);
      ctx.lineTo(x + 4.5, y + 3.5);
      ctx.lineTo(x - 4.5, y + 3.5);
      ctx.closePath();
      ctx.fill();
    }
    ctx.font = TICK_FONT;
    ctx.fillStyle = FONT.color;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    drawn.x.push(
      xTicks.values.map((v, k) => {
        ctx.fillText(xTicks.labels[k], toX(v), bottom + 4);
        const half = measure(xTicks.labels[k]) / 2;
        return { text: xTicks.labels[k], left: toX(v) - half, right: toX(v) + half };
      }),
    );
    ctx.font = TITLE_FONT;
    ctx.fillText(figure.x.title, (box.left + box.right) / 2, bottom + 21);
    if (panel.label) {
      ctx.font = TICK_FONT;
      ctx.fillStyle = panel.label.color;
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      ctx.fillText(panel.label.text, box.left, top - 3);
    }
  });
  return drawn;
}

const g3 = (v) => (v === null || v === undefined ? "–" : String(Number(v.toPrecision(3))));

/**
 * What a hover at x over one panel says (pure): a mark within `near` of x first (its own
 * text), else the header and every hoverable series' value at its point nearest x.
 * {x, text} (x: the step the cursor moves to), or null.
 */
export function hoverAt(figure, panel, x, near) {
  const { marks = [], series } = figure.panels[panel];
  const mark = marks.find((m) => Math.abs(m.x - x) <= near);
  if (mark) return { x: mark.x, text: mark.text };
  const lines = [];
  let at = null;
  for (const s of series) {
    if (s.hover === false) continue;
    const i = nearestIndex(s.x.length, (k) => s.x[k], x);
    if (i < 0 || s.y[i] === null || s.y[i] === undefined) continue;
    at ??= s.x[i];
    lines.push(s.hover ? s.hover(i) : `${s.name}: ${(s.format ?? g3)(s.y[i])}`);
  }
  if (at === null) return null;
  return { x: at, text: [figure.x.header(at), ...lines].join("\n") };
}

/** [lo, hi] of the steps (or values) between two x values, inside `range`; null if too narrow. */
export function zoomRange(range, a, b) {
  const lo = Math.max(range[0], Math.min(a, b));
  const hi = Math.min(range[1], Math.max(a, b));
  return hi - lo > (range[1] - range[0]) * 1e-3 ? [lo, hi] : null;
}

/**
 * A canvas chart in a card's plot area, `height` pixels tall: draw(figure) paints it (and
 * keeps it for a resize, the hover and the PNG); the hover shows every series' number and,
 * on a step axis, moves the shared cursor, whose lines showCursor places. Dragging across a
 * panel zooms in on that stretch of x (kept while new frames come, as Plotly's zoom was, until
 * a double-click or the zoom-out button; a new run or tap, `figure.key`, starts zoomed out).
 */
export function createCanvasChart(card, { height, cursor = null }) {
  card.plot.classList.add("canvas-chart");
  const canvas = el("canvas", "chart-canvas", { role: "img" });
  canvas.style.height = `${height}px`;
  card.plot.append(canvas);
  const buttons = el("div", "chart-buttons");
  const unzoom = el("button", "chart-unzoom", { type: "button", "data-i18n": "chart.unzoom", "data-i18n-title": "chart.unzoomWhy" });
  unzoom.hidden = true;
  const download = el("button", "chart-download", { type: "button", "data-i18n-title": "chart.download", "data-i18n-aria-label": "chart.download" });
  download.textContent = "PNG";
  buttons.append(unzoom, download);
  const selection = el("div", "zoom-box");
  selection.hidden = true;
  card.plot.after(buttons, selection);
  let figure = null;
  let zoom = null; // [lo, hi] of x a person zoomed in on
  let drag = null; // {panel, x, px} where a drag began
  let drawnWidth = 0;

  /** The figure as shown: zoomed in where a person dragged. */
  function shown() {
    return zoom ? { ...figure, x: { ...figure.x, range: zoom } } : figure;
  }

  function render() {
    if (!figure) return;
    const width = Math.max(1, card.plot.clientWidth);
    const scale = globalThis.devicePixelRatio || 1;
    const [w, h] = [Math.round(width * scale), Math.round(height * scale)];
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const view = shown();
    const ticks = paintFigure(ctx, width, view);
    drawnWidth = width;
    unzoom.hidden = zoom === null;
    canvas.setAttribute("aria-label", card.root.querySelector("h3")?.textContent ?? "");
    if (cursor?.step !== null && cursor?.step !== undefined) showCursor(cursor.step);
    // What the chart shows, for a reader of the page (the tests): panels, points, marks,
    // the ranges and where the tick labels went.
    const first = view.panels[0] ?? {};
    card.plot.figure = {
      panels: view.panels.map((p) => p.label?.text ?? null),
      points: Math.max(0, ...view.panels.flatMap((p) => p.series.map((s) => s.x.length))),
      series: view.panels.flatMap((p) => p.series.filter((s) => s.name).map((s) => s.name)),
      lines: (first.lines ?? []).map((line) => line.x),
      marks: (first.marks ?? []).map(({ x, y, color, text }) => ({ x, y, color, text })),
      xRange: view.x.range,
      yRange: view.y.range,
      ticks,
      layout: figureLayout(view),
    };
  }

  function showCursor(step) {
    if (!figure?.x.steps) return;
    drawCursor(card.overlay, cursorPlaces(figureLayout(shown()), card.plot.clientWidth, step, axisNames(figure)));
  }

  function leave() {
    tooltip().hidden = true;
    if (figure?.x.steps) cursor?.set(null);
  }

  /** The panel and x under the pointer, and its x in the canvas' pixels. */
  function under(event) {
    const rect = canvas.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const at = figure ? pointAt(shown(), rect.width, px, event.clientY - rect.top) : null;
    return at && { ...at, px, width: rect.width };
  }

  canvas.addEventListener("pointermove", (event) => {
    const at = under(event);
    if (drag) {
      const [left, right] = [Math.min(drag.px, at?.px ?? drag.px), Math.max(drag.px, at?.px ?? drag.px)];
      Object.assign(selection.style, { left: `${left}px`, width: `${right - left}px`, top: `${MARGIN.t}px`, height: `${height - MARGIN.t - MARGIN.b}px` });
      selection.hidden = false;
    }
    const range = shown()?.x.range;
    const hover = at ? hoverAt(shown(), at.panel, at.x, (6 / at.width) * (range[1] - range[0])) : null;
    if (!hover) {
      leave();
      return;
    }
    if (figure.x.steps) cursor?.set(hover.x);
    showTooltip(hover.text, event);
  });
  canvas.addEventListener("pointerleave", leave);
  canvas.addEventListener("pointerdown", (event) => {
    const at = under(event);
    if (!at || event.button !== 0) return;
    drag = at;
    canvas.setPointerCapture(event.pointerId); // its pointerup comes here, wherever it is
    event.preventDefault();
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!drag) return;
    const at = under(event);
    const start = drag;
    drag = null;
    selection.hidden = true;
    if (!at || Math.abs(at.px - start.px) < 5) return;
    zoom = zoomRange(shown().x.range, start.x, at.x) ?? zoom;
    render();
  });
  const zoomOut = () => {
    zoom = null;
    render();
  };
  canvas.addEventListener("dblclick", zoomOut);
  unzoom.addEventListener("click", zoomOut);
  download.addEventListener("click", () => {
    if (!figure) return;
    const width = card.plot.clientWidth;
    const image = document.createElement("canvas");
    image.width = width * 2;
    image.height = height * 2;
    const ctx = image.getContext("2d");
    ctx.setTransform(2, 0, 0, 2, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, height);
    paintFigure(ctx, width, shown());
    const link = document.createElement("a");
    link.download = `${figure.filename}.png`;
    link.href = image.toDataURL("image/png");
    link.click();
  });
  // A wider or narrower card redraws at once: the canvas is drawn for one width.
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      if (card.plot.clientWidth !== drawnWidth) render();
    }).observe(card.plot);
  }

  return {
    draw(next) {
      if (figure && figure.key !== next.key) zoom = null;
      figure = { height, ...next };
      render();
    },
    showCursor,
  };
}
