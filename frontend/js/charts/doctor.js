/** The BN doctor card: the server's findings about the run, by variant and layer, refreshed while it trains. */

import { getDoctor } from "../api.js";
import { getLang, t } from "../i18n.js";
import { ACTIVE_STATES } from "../state.js";
import { variantName } from "./plot.js";
import { setText } from "../dom.js";

// The checks read the last few probed frames (docs/doctor.md), which change over hundreds of
// steps: asking every 10 s keeps the card current at one read of the run's file per tab.
export const REFRESH_MS = 10_000;

const points = (value) => (Number.isFinite(value) ? Math.abs(value).toFixed(1) : null);
const percent = (share) => (Number.isFinite(share) ? (100 * share).toFixed(0) : null);

// A finding's title in the page's language, from its stable `code` and its numbers: the
// server writes English (its evidence and fix stay so). [key, params], or null to keep
// the server's title (a code or a number this page does not know).
const TITLES = {
  train_eval_gap: (n) => {
    const p = points(n.gap_points);
    if (p === null) return null;
    return [n.gap_points >= 0 ? "doctor.title.forgotEval" : "doctor.title.lagging", { points: p }];
  },
  stale_running_stats: (n) => {
    const p = points(n.gain_points);
    return p === null ? null : ["doctor.title.population", { points: p }];
  },
  running_mean_off: (n) => (Number.isInteger(n.channels_over) ? ["doctor.title.runningMeanOff", { n: n.channels_over }] : null),
  noisy_batch_stats: (n) => (Number.isInteger(n.normalizing_batch) ? ["doctor.title.noisyBatch", { n: n.normalizing_batch }] : null),
  dead_units: (n) => (percent(n.dead_units) === null ? null : ["doctor.title.dead", { pct: percent(n.dead_units) }]),
  saturated: (n) => (percent(n.saturated) === null ? null : ["doctor.title.saturated", { pct: percent(n.saturated) }]),
  skipped: () => ["doctor.title.skipped", {}],
  diverged: () => ["doctor.title.diverged", {}],
};

/** The finding's title: the server's in English, the page's own template in another language. */
export function findingTitle(finding, lang = getLang()) {
  if (lang === "en") return finding.title;
  const made = TITLES[finding.code]?.(finding.numbers ?? {});
  return made ? t(made[0], made[1], lang) : finding.title;
}

/**
 * Findings grouped for reading: one group per variant in the run's order (then any other
 * variant a finding names), each with its sections, the whole network before each hidden
 * layer in order, findings in the server's order within a section.
 */
export function groupFindings(findings, variants = []) {
  const order = [...variants, ...findings.map((f) => f.variant).filter((v) => !variants.includes(v))];
  return [...new Set(order)].map((variant) => {
    const mine = findings.filter((f) => f.variant === variant);
    const layers = [...new Set(mine.map((f) => f.layer ?? null))].sort((a, b) => (a === null ? -1 : b === null ? 1 : a - b));
    return { variant, sections: layers.map((layer) => ({ layer, findings: mine.filter((f) => (f.layer ?? null) === layer) })) };
  });
}

/** Per hidden layer (0-based) with a finding: the worst severity and the titles, for its header badge. */
export function layerMarks(findings, lang = getLang()) {
  const marks = {};
  for (const finding of findings) {
    if (!Number.isInteger(finding.layer)) continue;
    const mark = (marks[finding.layer] ??= { severity: "info", count: 0, titles: [] });
    if (finding.severity === "warn") mark.severity = "warn";
    mark.count += 1;
    mark.titles.push(`${variantName(finding.variant)}: ${findingTitle(finding, lang)}`);
  }
  return marks;
}

/**
 * What the card shows, as plain data (pure but for t()): `answer` is null before the first
 * answer, else what api.js returns ({ok, status, body}). status: checking | error | clear | found.
 */
export function doctorView(answer, variants = [], lang = getLang()) {
  const note = lang === "en" ? null : t("doctor.englishNote", {}, lang);
  if (answer === null) return { status: "checking", line: t("doctor.checking", {}, lang), note: null, groups: [], marks: {} };
  const findings = answer.ok && Array.isArray(answer.body?.findings) ? answer.body.findings : null;
  if (findings === null) {
    const detail = typeof answer.body?.detail === "string" ? answer.body.detail : answer.status ? `HTTP ${answer.status}` : t("err.network", {}, lang);
    return { status: "error", line: t("doctor.error", { detail }, lang), note: null, groups: [], marks: {} };
  }
  if (findings.length === 0) return { status: "clear", line: t("doctor.none", {}, lang), note: null, groups: [], marks: {} };
  const warn = findings.filter((f) => f.severity === "warn").length;
  const groups = groupFindings(findings, variants).map(({ variant, sections }) => ({
    variant,
    name: variantName(variant),
    sections: sections.map(({ layer, findings: items }) => ({
      layer,
      heading: layer === null ? t("doctor.network", {}, lang) : t("layer.title", { n: layer + 1 }, lang),
      items: items.map((f) => ({
        severity: f.severity,
        badge: t(`doctor.severity.${f.severity === "warn" ? "warn" : "info"}`, {}, lang),
        title: findingTitle(f, lang),
        evidence: f.evidence,
        fix: f.fix,
      })),
    })),
  }));
  return {
    status: "found",
    line: t("doctor.summary", { warn, info: findings.length - warn }, lang),
    note,
    groups,
    marks: layerMarks(findings, lang),
  };
}

function node(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

/** The card's DOM: no plot in it, only text (title and note filled by translatePage). */
export function createDoctorCard() {
  const root = node("figure", "card doctor-card");
  root.id = "doctor-card";
  const caption = node("figcaption");
  const head = node("div", "card-head");
  const heading = node("h3");
  heading.dataset.i18n = "chart.doctor";
  const stats = node("span", "chart-stats");
  head.append(heading, stats);
  const text = node("p", "note");
  text.dataset.i18n = "note.doctor";
  caption.append(head, text);
  const body = node("div", "doctor-body");
  body.setAttribute("aria-live", "polite");
  root.append(caption, body);
  return { root, body, stats };
}

/** The badge a hidden layer's header carries while that layer has a finding (hidden until then). */
export function createLayerBadge() {
  const badge = node("span", "doctor-badge");
  badge.hidden = true;
  return badge;
}

function renderView(card, badges, view) {
  card.body.dataset.status = view.status;
  setText(card.stats, view.status === "found" ? view.line : "");
  // With findings the summary stands in the card's head; otherwise the line says it all.
  const parts = view.status === "found" ? [] : [node("p", "doctor-line", view.line)];
  if (view.note) parts.push(node("p", "doctor-lang-note", view.note));
  for (const group of view.groups) {
    const section = node("section", "doctor-variant");
    section.dataset.variant = group.variant;
    section.append(node("h4", "doctor-variant-name", group.name));
    if (group.sections.length === 0) section.append(node("p", "doctor-clear", t("doctor.none")));
    for (const part of group.sections) {
      section.append(node("h5", "doctor-where", part.heading));
      for (const item of part.items) {
        const entry = node("div", "doctor-finding");
        const title = node("p", "doctor-title");
        const severity = node("span", "doctor-severity", item.badge);
        severity.dataset.severity = item.severity;
        title.append(severity, " ", node("b", "", item.title));
        const fix = node("p", "doctor-fix");
        fix.append(node("span", "doctor-fix-label", t("doctor.fix")), " ", item.fix);
        entry.append(title, node("p", "doctor-evidence", item.evidence), fix);
        section.append(entry);
      }
    }
    parts.push(section);
  }
  card.body.replaceChildren(...parts);
  badges.forEach((badge, layer) => {
    const mark = view.marks[layer];
    badge.hidden = !mark;
    if (!mark) return;
    badge.dataset.severity = mark.severity;
    badge.textContent = t("doctor.badge", { n: mark.count });
    badge.title = mark.titles.join("\n");
  });
}

/**
 * The card's widget. It asks the server when the run changes, then every REFRESH_MS while
 * the run is active and once more after it ends; frames only give it the chance to look at
 * the clock. A failed request is shown as a line, never thrown.
 */
export function createDoctor(card, { runKey, badges = [], ask = getDoctor, now = () => performance.now() }) {
  let runId = null;
  let answer = null;
  let askedAt = -Infinity;
  let askedEnded = false;
  let pendingFor = null; // the run a request is out for
  let latest = null; // the newest state seen, drawn when an answer comes
  let shown = null; // what was drawn last: an unchanged answer is not redrawn (nor re-announced)

  function draw(state) {
    const lang = getLang();
    const key = JSON.stringify([answer && [answer.ok, answer.status, answer.body], lang, state.variants]);
    if (key === shown) return;
    shown = key;
    renderView(card, badges, doctorView(answer, state.variants, lang));
  }

  function request(id, ended) {
    pendingFor = id;
    askedAt = now();
    if (ended) askedEnded = true;
    const failed = (error) => ({ ok: false, status: 0, body: null, error: String(error) });
    let asking;
    try {
      asking = Promise.resolve(ask(id));
    } catch (error) {
      asking = Promise.resolve(failed(error));
    }
    asking
      .catch(failed)
      .then((reply) => {
        if (pendingFor === id) pendingFor = null;
        if (id !== runId) return; // the page moved on to another run meanwhile
        answer = reply;
        draw(latest);
      });
  }

  return {
    name: "doctor",
    update(state) {
      latest = state;
      const id = runKey();
      if (id !== runId) {
        runId = id;
        answer = null;
        askedAt = -Infinity;
        askedEnded = false;
      }
      const ended = state.runState !== null && !ACTIVE_STATES.has(state.runState);
      const due = ended ? !askedEnded : now() - askedAt >= REFRESH_MS;
      // Before the hello the server has nothing to judge (it would answer 409).
      if (id !== "none" && state.hello && due && pendingFor !== id) request(id, ended);
      draw(state);
    },
  };
}
