/** Inside BN for one layer and channel: batch vs running mean and variance, and γ, β over time. */

import { t } from "../i18n.js";
import { columnsIn, layerChannels } from "../state.js";
import { bnChannel, stepsOf } from "../series.js";
import { panelDomains } from "./figure.js";
import { setLegend } from "./card.js";
import { followHover } from "./cursor.js";
import { baseLayout, eventShapes, placeCursor, react, stepAxis, subplotLabel, valueAxis, variantColor, variantName, withAlpha } from "./plot.js";
import { setText } from "../dom.js";

const PANELS = [
  { xaxis: "x", yaxis: "y", title: "axis.mean", fields: ["batch_mean", "running_mean"] },
  { xaxis: "x2", yaxis: "y2", title: "axis.var", fields: ["batch_var", "running_var"] },
  { xaxis: "x3", yaxis: "y3", title: "axis.gammaBeta", fields: ["gamma", "beta"] },
];

const RUNNING = "#1d2430";
const LABELS = { batch_mean: "legend.batch", batch_var: "legend.batch", running_mean: "legend.running", running_var: "legend.running", gamma: "γ", beta: "β" };
const label = (field) => (LABELS[field].startsWith("legend.") ? t(LABELS[field]) : LABELS[field]);

function style(field, color) {
  if (field.startsWith("running")) return { color: RUNNING, width: 2 };
  if (field.startsWith("batch")) return { color: withAlpha(color, 0.4), width: 1 };
  if (field === "gamma") return { color, width: 1.8 };
  return { color: "#555", width: 1.6, dash: "dot" };
}

/** One layer's BN internals; view.bnVariant and view.channel pick which. */
export function createBnChart(card, { layer, view, cursor, runKey }) {
  let hooked = false;
  return {
    name: `bn-${layer}`,
    element: card.plot,
    update(state) {
      const variant = state.variants.includes(view.bnVariant) ? view.bnVariant : null;
      const columns = columnsIn(state, view);
      const x = stepsOf(columns);
      const width = variant ? layerChannels(state.hello, variant, layer) : 0;
      const channel = Math.min(view.channel, Math.max(0, width - 1));
      const color = variant ? variantColor(variant, state.variants.indexOf(variant)) : "#888";
      const series = variant ? bnChannel(columns, variant, layer, channel) : null;
      const domains = panelDomains(PANELS.length);
      const traces = [];
      const layout = {
        ...baseLayout({ uirevision: `${runKey()}:${variant}:${channel}`, revision: state.revision, height: 230, margin: { l: 44 } }),
        annotations: PANELS.map((panel) => subplotLabel(t(panel.title), panel.xaxis)),
        shapes: eventShapes(state.events, PANELS.map((panel) => [panel.xaxis, panel.yaxis])),
      };
      PANELS.forEach((panel, i) => {
        const suffix = i === 0 ? "" : String(i + 1);
        layout[`xaxis${suffix}`] = stepAxis({ domain: domains[i], anchor: panel.yaxis, ...(i ? { matches: "x" } : {}) });
        layout[`yaxis${suffix}`] = valueAxis("", { anchor: panel.xaxis, nticks: 5 });
        for (const field of series ? panel.fields : []) {
          traces.push({
            type: "scatter",
            mode: "lines",
            x,
            y: series[field],
            xaxis: panel.xaxis,
            yaxis: panel.yaxis,
            name: label(field),
            line: style(field, color),
            hovertemplate: `${label(field)} %{y:.4g}<extra></extra>`,
          });
        }
      });
      react(card.plot, traces, layout, `covshift-layer${layer + 1}-bn-channel${channel + 1}`);
      setText(card.stats, variant ? `${variantName(variant)} · ${t("bn.channelOf", { channel: channel + 1, width })}` : t("controls.noBn"));
      setLegend(card, [
        { label: t("legend.batch"), color: withAlpha(color, 0.4), width: 1 },
        { label: t("legend.running"), color: RUNNING, width: 2 },
        { label: "γ", color, width: 1.8 },
        { label: "β", color: "#555", width: 1.6, dash: "dot" },
      ]);
      if (!hooked && card.plot.on) {
        followHover(card.plot, cursor);
        hooked = true;
      }
    },
    showCursor(step) {
      placeCursor(card.plot, card.overlay, step, PANELS.map((panel) => panel.xaxis));
    },
  };
}
