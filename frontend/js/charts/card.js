/** A chart card: title, "what to look for" note, a stats line and the plot area (DOM only). */

/**
 * createCard({title, note}) → {root, head, plot, overlay, stats}. `title` and `note` are
 * i18n keys (translatePage fills them); `overlay` sits over the plot for the step cursor.
 */
export function createCard({ title, note, className = "", titleParams = null }) {
  const root = document.createElement("figure");
  root.className = `card ${className}`.trim();
  const caption = document.createElement("figcaption");
  const heading = document.createElement("h3");
  if (titleParams) heading.dataset.i18nParams = JSON.stringify(titleParams);
  heading.dataset.i18n = title;
  const stats = document.createElement("span");
  stats.className = "chart-stats";
  const head = document.createElement("div");
  head.className = "card-head";
  head.append(heading, stats);
  const text = document.createElement("p");
  text.className = "note";
  text.dataset.i18n = note;
  caption.append(head, text);
  const frame = document.createElement("div");
  frame.className = "plot-frame";
  const plot = document.createElement("div");
  plot.className = "plot";
  const overlay = document.createElement("div");
  overlay.className = "cursor-overlay";
  frame.append(plot, overlay);
  root.append(caption, frame);
  return { root, head, plot, overlay, stats };
}

export const DASH = { solid: "", dot: "2 3", dash: "6 4", longdash: "10 4", dashdot: "6 3 2 3" };

/**
 * A legend drawn as HTML next to the title: Plotly's own legend costs several
 * milliseconds on every redraw, and these entries only change with the run's shape.
 * items: [{label, color, dash, width, fill}]
 */
export function setLegend(card, items) {
  const key = JSON.stringify(items);
  if (card.legendKey === key) return;
  card.legendKey = key;
  if (!card.legend) {
    card.legend = document.createElement("div");
    card.legend.className = "card-legend";
    card.head.after(card.legend);
  }
  card.legend.replaceChildren(
    ...items.map((item) => {
      const entry = document.createElement("span");
      entry.className = "legend-item";
      const ns = "http://www.w3.org/2000/svg";
      const svg = document.createElementNS(ns, "svg");
      svg.setAttribute("width", "22");
      svg.setAttribute("height", "10");
      svg.setAttribute("aria-hidden", "true");
      if (item.fill) {
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", "1");
        rect.setAttribute("y", "1");
        rect.setAttribute("width", "20");
        rect.setAttribute("height", "8");
        rect.setAttribute("fill", item.fill);
        svg.append(rect);
      }
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", "1");
      line.setAttribute("x2", "21");
      line.setAttribute("y1", "5");
      line.setAttribute("y2", "5");
      line.setAttribute("stroke", item.color);
      line.setAttribute("stroke-width", String(item.width ?? 2));
      if (item.dash && DASH[item.dash]) line.setAttribute("stroke-dasharray", DASH[item.dash]);
      svg.append(line);
      if (item.marker) {
        const dot = document.createElementNS(ns, "circle");
        dot.setAttribute("cx", "11");
        dot.setAttribute("cy", "5");
        dot.setAttribute("r", "2.5");
        dot.setAttribute("fill", item.color);
        svg.append(dot);
      }
      const text = document.createElement("span");
      text.textContent = item.label;
      if (item.title) entry.title = item.title; // the longer explanation, on hover
      entry.append(svg, text);
      return entry;
    }),
  );
}
