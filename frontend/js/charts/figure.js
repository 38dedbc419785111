/** A chart figure drawn on a canvas: panels side by side on one value axis, their series,
 * event lines and marks, axes and labels; where a point falls, and what a hover there says. */

/*
 * As Plotly figures the first screen's charts cost 30–60 ms a redraw on a CPU four times
 * slower than a desktop's (most of it Plotly's own defaults, axes and text measuring,
 * whatever the data); drawn here the same lines take a few. A figure is plain data:
 * {x: {range, title, steps, header}, y: {range, title, log, percent, ticks}, panels:
 * [{label, series, lines, marks}], height}; canvas.js gives it a card.
 */

import { nearestIndex } from "../series.js";
import { DASH } from "./card.js";
import { FONT } from "./plot.js";
import { percentLabel, spacedTicks, tickLabel } from "./ticks.js";

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

export function axisNames(figure) {
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

/** A number to three significant digits, as a hover writes it ("–" for none). */
export const g3 = (v) => (v === null || v === undefined ? "–" : String(Number(v.toPrecision(3))));

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
