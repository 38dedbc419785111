/** The lessons on the page: a strip that starts each lesson's run, and the panel that walks through it. */

// A lesson is data from the server (GET /api/rules: lessons). Clicking one posts its values as
// a new run; the page remembers which lesson a run was started for (sessionStorage, keyed by
// run id: the API takes a run config and nothing else), and while that run is viewed the panel
// shows the lesson's text, links to the charts it points at, its scheduled changes and its
// claims, judged live on the page's frames (claims.js).

import { createRun } from "./api.js";
import { formatNumber } from "./bounds.js";
import { claimSentence, evaluateClaim } from "./claims.js";
import { el } from "./dom.js";
import { getLang, onLangChange, t } from "./i18n.js";
import { defaultsOf, lessonsOf } from "./rules.js";
import { ACTIVE_STATES } from "./state.js";

const STORAGE_KEY = "covshift.lessonRuns";
const LIVE_FIELDS = ["lr", "batch_size", "bn_momentum"];
// How long a chart that a "watch" link scrolled to stays outlined.
const FLASH_MS = 1600;

/** Which lesson each run was started for, kept in `storage` (sessionStorage: this tab's session). */
export function lessonRunStore(storage) {
  function read() {
    try {
      const saved = JSON.parse(storage?.getItem(STORAGE_KEY) ?? "{}");
      return saved && typeof saved === "object" && !Array.isArray(saved) ? saved : {};
    } catch {
      return {}; // unreadable or disabled storage: no run is a lesson's
    }
  }
  return {
    get: (runId) => read()[runId] ?? null,
    set(runId, lessonId) {
      try {
        storage?.setItem(STORAGE_KEY, JSON.stringify({ ...read(), [runId]: lessonId }));
      } catch {
        // quota or privacy mode: the panel lasts while the run is viewed, not past a reload
      }
    },
  };
}

/**
 * A lesson's scheduled changes with the value each one replaces: [{step, changes: [{field,
 * from, to}]}] in step order, starting from the lesson's values over the server's defaults.
 */
export function scheduledChanges(values, defaults = {}) {
  const settings = {};
  for (const field of LIVE_FIELDS) settings[field] = field in values ? values[field] : defaults[field];
  const entries = [...(values.schedule ?? [])].sort((a, b) => a.step - b.step);
  return entries.map((entry) => ({
    step: entry.step,
    changes: LIVE_FIELDS.filter((field) => field in entry).map((field) => {
      const change = { field, from: settings[field], to: entry[field] };
      settings[field] = entry[field];
      return change;
    }),
  }));
}

/** Where a lesson's chart id lives on the page (a CSS selector); `layer` is 0-based. */
export function watchTarget(chart, layer) {
  const section = `#layer-${layer + 1}`;
  switch (chart) {
    case "lesson":
      return "#lesson";
    case "loss":
      return "#overview .card.loss";
    case "accuracy":
    case "inference": // test accuracy in eval and train mode, population, cumulative: one card
      return "#overview .card.accuracy";
    case "bn":
      return `${section} .card.bn`;
    case "taps": // the distribution card, showing the tap picked under "Distribution of"
      return `${section} .card.dist`;
    case "drift":
      return "#measuring-charts .card.wide:not(.ics)";
    case "ics":
      return "#measuring-charts .card.ics";
    default:
      return null;
  }
}

/** The last step a claim needs before it can be judged (its range's end). */
const judgedAt = (claim) => claim.params?.to_step ?? 0;

const stepText = (step) => step.toLocaleString("en-US");

function settingText(field, value) {
  if (field === "bn_momentum" && value === null) return t("lessons.cumulative");
  return formatNumber(value);
}

/**
 * The strip in `strip`, the panel in `panel`. startRun(runInfo) shows a run just created;
 * choose({tap, window}) makes the "Show" panel's choices. Returns the panel's scheduler widget
 * and showRun(runId), to call whenever the viewed run changes.
 */
export function createLessons({ strip, panel, view, getState, getRunId, startRun, choose, storage = globalThis.sessionStorage }) {
  const lessons = lessonsOf();
  const runs = lessonRunStore(storage);
  let current = null; // {runId, lesson} while a lesson's run is viewed
  const closed = new Set(); // runs whose panel the person closed
  let lines = { claims: [], schedule: [] }; // the panel's live lines, rebuilt with it

  const label = el("span", "lessons-label", { i18n: "lessons.title" });
  const list = el("ol", "lessons-list");
  const message = el("span", "msg error lessons-msg", { role: "status", "aria-live": "polite" });
  const buttons = lessons.map((lesson, i) => {
    const button = el("button", "lesson-button", { type: "button", "data-lesson": lesson.id });
    button.append(el("span", "lesson-number"), el("span", "lesson-title"));
    button.firstChild.textContent = String(i + 1);
    button.addEventListener("click", () => startLesson(lesson, button));
    const item = el("li");
    item.append(button);
    list.append(item);
    return button;
  });
  strip.replaceChildren(label, list, message);
  strip.hidden = lessons.length === 0;

  async function startLesson(lesson, button) {
    message.textContent = "";
    const state = getState();
    // The lesson being viewed, still training: show its panel again rather than start another.
    if (current?.lesson === lesson && ACTIVE_STATES.has(state.runState ?? "created")) {
      closed.delete(current.runId);
      render();
      return;
    }
    for (const b of buttons) b.disabled = true;
    button.setAttribute("aria-busy", "true");
    const answer = await createRun(lesson.values);
    for (const b of buttons) b.disabled = false;
    button.removeAttribute("aria-busy");
    if (!answer.ok) {
      const detail = answer.status ? String(answer.body?.detail ?? answer.status) : t("err.network");
      message.textContent = t("lessons.startFailed", { detail });
      return;
    }
    runs.set(answer.body.id, lesson.id);
    startRun(answer.body);
  }

  /** The viewed run changed: set the view its lesson asks for and open its panel (or close it). */
  function showRun(runId) {
    const lesson = lessons.find((l) => l.id === runs.get(runId)) ?? null;
    current = lesson ? { runId, lesson } : null;
    view.lessonLayer = lesson ? lesson.watch.layer : null;
    // A lesson is a few thousand steps and makes its point at given steps: show all of it.
    if (lesson) choose({ tap: lesson.watch.tap, window: "all" });
    render();
  }

  function watchLink(chart, layer, tap) {
    const link = el("button", "lesson-link", { type: "button" });
    link.textContent = t(`lessons.watch.${chart}`, { n: layer + 1, tap: t(`tap.${tap}`) });
    link.addEventListener("click", () => {
      const target = document.querySelector(watchTarget(chart, layer));
      if (!target) return;
      target.scrollIntoView({ behavior: "smooth", block: "start" });
      const flashed = chart === "taps" ? [target, document.getElementById("view-tap")] : [target];
      for (const node of flashed) node?.classList.add("lesson-flash");
      setTimeout(() => flashed.forEach((node) => node?.classList.remove("lesson-flash")), FLASH_MS);
    });
    return link;
  }

  /** The panel's first line: the lesson's number and title, the charts to watch, a close button. */
  function panelHead(lesson, title, runId) {
    const head = el("div", "lesson-panel-head");
    const heading = el("h2", "lesson-panel-title");
    heading.textContent = t("lessons.heading", { n: lessons.indexOf(lesson) + 1, title });
    const watch = el("p", "lesson-watch");
    const watchLabel = el("span", "lesson-watch-label");
    watchLabel.textContent = t("lessons.watch");
    watch.append(watchLabel, ...lesson.watch.charts.map((chart) => watchLink(chart, lesson.watch.layer, lesson.watch.tap)));
    const close = el("button", "lesson-close", { type: "button", "aria-label": t("lessons.close"), title: t("lessons.close") });
    close.textContent = "×";
    close.addEventListener("click", () => {
      closed.add(runId);
      render();
    });
    head.append(heading, watch, close);
    return head;
  }

  /** What to look for, and the scheduled changes (ticked off as the run passes them). */
  function panelText(lesson, body) {
    const text = el("div", "lesson-text");
    const paragraph = el("p", "lesson-body");
    paragraph.textContent = body;
    text.append(paragraph);
    const schedule = scheduledChanges(lesson.values, defaultsOf());
    const list = el("ul", "lesson-schedule");
    lines.schedule = schedule.map((entry) => {
      const item = el("li");
      const said = entry.changes.map((c) => t("lessons.change", { field: t(`lessons.field.${c.field}`), from: settingText(c.field, c.from), to: settingText(c.field, c.to) }));
      item.textContent = t("lessons.at", { step: stepText(entry.step), changes: said.join(", ") });
      list.append(item);
      return { item, step: entry.step };
    });
    if (schedule.length) text.append(list);
    return text;
  }

  /** One line per claim, filled in by the widget as the run's frames arrive. */
  function panelClaims(lesson) {
    const checks = el("div", "lesson-checks");
    const list = el("ul", "lesson-claims", { "aria-live": "polite" });
    lines.claims = lesson.claims.map((claim) => {
      const item = el("li", "lesson-claim");
      item.dataset.status = "checking";
      list.append(item);
      return { item, claim };
    });
    checks.append(list);
    return checks;
  }

  /** Build the panel for the viewed lesson in the page's language (the strip's titles too). */
  function render() {
    const lang = getLang();
    lessons.forEach((lesson, i) => {
      buttons[i].lastChild.textContent = lesson.text[lang]?.title ?? lesson.text.en.title;
      buttons[i].setAttribute("aria-pressed", String(current?.lesson === lesson));
    });
    const open = current !== null && !closed.has(current.runId);
    panel.hidden = !open;
    document.body.classList.toggle("lesson-open", open);
    lines = { claims: [], schedule: [] };
    if (!open) {
      panel.replaceChildren();
      return;
    }
    const { lesson, runId } = current;
    const words = lesson.text[lang] ?? lesson.text.en;
    // Left what to look for and when the schedule changes things; right what this run showed.
    const grid = el("div", "lesson-panel-grid");
    grid.append(panelText(lesson, words.body), panelClaims(lesson));
    panel.replaceChildren(panelHead(lesson, words.title, runId), grid);
    widget.update(getState());
  }

  // Judged on every redraw of the panel: a few hundred frames at most, a fraction of a millisecond.
  const widget = {
    name: "lesson-panel",
    element: panel,
    intervalMs: 500,
    update(state) {
      if (!current || getRunId() !== current.runId) return;
      const step = typeof state.step === "number" ? state.step : -1;
      for (const { item, step: at } of lines.schedule) item.classList.toggle("done", step >= at);
      for (const { item, claim } of lines.claims) {
        const result = evaluateClaim(claim, state);
        const status = result.holds === null ? "checking" : result.holds ? "holds" : "fails";
        const sentence = claimSentence(claim, result, getLang()) ?? t("lessons.checking", { step: stepText(judgedAt(claim)) });
        if (item.textContent !== sentence) item.textContent = sentence;
        item.dataset.status = status;
      }
    },
  };

  onLangChange(render);
  render();
  return { widget, showRun, get current() { return current; } };
}
