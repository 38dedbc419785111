/** A canvas chart in a card: draws a figure (figure.js), with hover, the shared step cursor,
 * drag to zoom and a PNG download. The live charts of the first screen are these, as the
 * heatmaps are canvases: a Plotly redraw of each was a long task on a slow machine. */

import { el, setProperty, showTooltip, tooltip } from "../dom.js";
import { axisNames, figureLayout, hoverAt, MARGIN, paintFigure, pointAt } from "./figure.js";
import { cursorPlaces, drawCursor } from "./plot.js";

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
  // The plot's width as the last resize observation found it (null until the first): a
  // redraw reads this rather than the layout, which a frame's earlier writes left stale, so
  // reading it would make the browser lay the page out again in the middle of the script.
  let plotWidth = null;
  const widthNow = () => plotWidth ?? card.plot.clientWidth;

  /** The figure as shown: zoomed in where a person dragged. */
  function shown() {
    return zoom ? { ...figure, x: { ...figure.x, range: zoom } } : figure;
  }

  function render() {
    if (!figure) return;
    const width = Math.max(1, widthNow());
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
    setProperty(unzoom, "hidden", zoom === null);
    setProperty(canvas, "ariaLabel", card.root.querySelector("h3")?.textContent ?? "");
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
    drawCursor(card.overlay, cursorPlaces(figureLayout(shown()), widthNow(), step, axisNames(figure)));
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
    const width = widthNow();
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
  // A wider or narrower card redraws at once: the canvas is drawn for one width. The
  // observer runs after layout, so reading the width here costs no layout of its own.
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      plotWidth = card.plot.clientWidth;
      if (plotWidth !== drawnWidth) render();
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
