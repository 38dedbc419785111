/** The runs list (live and finished) to switch between or replay, and the viewed run's export links. */

import { exportUrl, reportUrl } from "./api.js";
import { formatNumber } from "./bounds.js";
import { getLang, t } from "./i18n.js";
import { variantName } from "./charts/plot.js";
import { ACTIVE_STATES } from "./state.js";
import { setProperty, setText } from "./dom.js";


/**
 * Which run to show when the page does not name one (or names one the server no longer
 * has): the newest active run, else the newest run. Runs come oldest first.
 */
export function pickRun(runs, wanted = null) {
  if (!Array.isArray(runs) || runs.length === 0) return null;
  if (wanted && runs.some((run) => run.id === wanted)) return wanted;
  const active = runs.filter((run) => ACTIVE_STATES.has(run.state));
  const pool = active.length ? active : runs;
  return pool[pool.length - 1].id;
}

/** One line about a run's setup: "digits · plain / BN · 3×100 sigmoid". */
export function runSummary(config = {}) {
  if (config.source === "watch") {
    // The user's own models, under the names they gave them.
    return [config.name, (config.variants ?? []).join(" / "), t("runs.watched")].filter(Boolean).join(" · ");
  }
  const variants = (config.variants ?? []).map(variantName).join(" / ");
  const shape = config.depth && config.width ? `${config.depth}×${config.width}` : "";
  return [config.dataset, variants, [shape, config.activation].filter(Boolean).join(" ")].filter(Boolean).join(" · ");
}

/**
 * What tells runs apart in the list: the run's current learning rate and batch size and
 * when it started (local time), e.g. "lr 0.5 · batch 60 · started 14:05".
 */
export function runSettings(run, now = new Date()) {
  const bits = [];
  if (typeof run.lr === "number") bits.push(`${t("runs.lr")} ${formatNumber(run.lr)}`);
  if (typeof run.batch_size === "number") bits.push(`${t("runs.batch")} ${run.batch_size}`);
  const created = run.created ? new Date(run.created) : null;
  if (created && !Number.isNaN(created.getTime())) {
    const sameDay = created.toDateString() === now.toDateString();
    const pad = (n) => String(n).padStart(2, "0");
    const time = `${pad(created.getHours())}:${pad(created.getMinutes())}`;
    const day = sameDay ? "" : `${created.getFullYear()}-${pad(created.getMonth() + 1)}-${pad(created.getDate())} `;
    bits.push(t("runs.started", { when: `${day}${time}` }));
  }
  return bits.join(" · ");
}

export function createRunsList(root, { onSelect }) {
  const title = document.createElement("h2");
  title.dataset.i18n = "runs.title";
  const list = document.createElement("ul");
  list.className = "runs-list";
  const exportBox = document.createElement("p");
  exportBox.className = "export";
  root.replaceChildren(title, list, exportBox);
  // One row per run, kept across polls and updated in place: rebuilding the list every two
  // seconds moved keyboard focus away and lost clicks that landed mid-rebuild.
  const rows = new Map(); // run id -> {item, button, badge, summary, meta}
  let order = "";
  let exportFor = undefined;

  function row(run) {
    let found = rows.get(run.id);
    if (found) return found;
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.runId = run.id;
    const badge = document.createElement("span");
    badge.className = "run-state";
    const summary = document.createElement("span");
    summary.className = "run-summary";
    const meta = document.createElement("span");
    meta.className = "run-meta";
    button.append(badge, summary, meta);
    button.addEventListener("click", () => onSelect(run.id));
    item.append(button);
    found = { item, button, badge, summary, meta };
    rows.set(run.id, found);
    return found;
  }

  function render(runs, currentId) {
    const newestFirst = [...runs].reverse();
    const ids = newestFirst.map((run) => run.id).join(" ");
    for (const run of newestFirst) {
      const { button, badge, summary, meta } = row(run);
      setProperty(button, "className", `run${run.id === currentId ? " current" : ""}`);
      if (badge.dataset.state !== run.state) badge.dataset.state = run.state;
      setText(badge, t(`runstate.${run.state}`));
      setText(summary, runSummary(run.config));
      const bits = [runSettings(run), `${t("status.step")} ${Number(run.step ?? 0).toLocaleString("en-US")}`];
      if (run.demo) bits.unshift(t("runs.demo"));
      if (run.id === currentId) bits.push(t("runs.viewing"));
      setText(meta, bits.join(" · "));
    }
    if (ids !== order) {
      // The set of runs changed (one started, or a restart forgot one): lay the rows out again.
      order = ids;
      for (const id of [...rows.keys()]) if (!runs.some((run) => run.id === id)) rows.delete(id);
      if (runs.length === 0) {
        const empty = document.createElement("li");
        empty.className = "muted";
        empty.textContent = t("runs.empty");
        list.replaceChildren(empty);
      } else {
        list.replaceChildren(...newestFirst.map((run) => rows.get(run.id).item));
      }
    }
    if (exportFor !== currentId) {
      exportFor = currentId;
      renderExport(currentId);
    }
  }

  function renderExport(currentId) {
    exportBox.replaceChildren();
    if (!currentId) return;
    const label = document.createElement("span");
    label.dataset.i18n = "runs.export";
    label.textContent = t("runs.export");
    const jsonl = document.createElement("a");
    jsonl.href = exportUrl(currentId, "jsonl");
    jsonl.textContent = "JSONL";
    jsonl.setAttribute("download", "");
    const csv = document.createElement("a");
    csv.href = exportUrl(currentId, "csv");
    csv.textContent = "CSV";
    csv.setAttribute("download", "");
    const report = document.createElement("a");
    report.href = reportUrl(currentId, getLang());
    // The language may change after the link is made: the click takes the current one.
    const reportFor = currentId;
    report.addEventListener("click", () => (report.href = reportUrl(reportFor, getLang())));
    report.dataset.i18n = "runs.report";
    report.textContent = t("runs.report");
    report.setAttribute("download", "");
    exportBox.append(label, ": ", jsonl, " · ", csv, " · ", report);
  }

  return { render };
}
