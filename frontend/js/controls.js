/** Live controls of the viewed run: learning rate, batch size, BN momentum, pause / step / stop. */

import { boundOf, boundsText, formatNumber, fromSlider, skippedAt, SLIDER_STEPS, toSlider, validate } from "./bounds.js";
import { t } from "./i18n.js";
import { variantName } from "./charts/plot.js";
import { el, setProperty, setText } from "./dom.js";
import { ACTIVE_STATES, batchStatVariants } from "./state.js";

// After a person touches a control, the stream does not overwrite it for this long.
const EDIT_HOLD_MS = 2500;

function formatValue(field, value) {
  if (field === "bn_momentum" && value === null) return "";
  return formatNumber(value);
}

/** The "now" value: "cumulative" means something for BN momentum only; unknown is "—". */
function nowText(field, value) {
  if (field === "bn_momentum" && value === null) return t("event.cumulative");
  return formatNumber(value);
}

/** A message line under a control: pending, ok (fades) or error. */
function say(node, text, kind) {
  setProperty(node, "className", kind ? `msg ${kind}` : "msg");
  setText(node, text);
}

/**
 * One numeric live control: label, current value, optional log slider, typed entry, bounds
 * and a message line. A typed value is checked in place (and refused with the reason)
 * before anything is sent; the server's answer shows on the same line.
 */
class NumberControl {
  constructor(field, { slider, send, context, isActive }) {
    this.field = field;
    this.send = send;
    this.context = context;
    this.isActive = isActive;
    this.heldUntil = 0;
    this.shown = undefined;
    this.current = undefined; // the run's setting, as the stream last said
    this.inFlight = undefined; // the value sent and not yet answered
    this.box = el("div", "control", { "data-field": field });
    const head = el("div", "control-head");
    const now = el("span", "now");
    this.nowValue = el("b", "now-value");
    now.append(el("span", "", { i18n: "controls.now" }), " ", this.nowValue);
    head.append(el("label", "", { for: `control-${field}`, i18n: `controls.${field}` }), now);
    const row = el("div", "control-row");
    this.entry = el("input", "entry", { id: `control-${field}`, type: "text", inputmode: "decimal", autocomplete: "off", spellcheck: "false", size: "8" });
    this.range = slider ? el("input", "slider", { type: "range", min: "0", max: String(SLIDER_STEPS), step: "1", "aria-label": field }) : null;
    if (this.range) row.append(this.range);
    row.append(this.entry);
    const foot = el("div", "control-foot");
    this.bounds = el("span", "bounds");
    this.message = el("span", "msg", { role: "status", "aria-live": "polite" });
    foot.append(this.bounds, this.message);
    this.box.append(head, row, foot);
    this.listen();
  }

  listen() {
    this.entry.addEventListener("input", () => {
      this.hold();
      this.clear();
    });
    this.entry.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.submitEntry();
      if (event.key === "Escape") {
        this.heldUntil = 0;
        this.entry.value = this.shown === undefined ? "" : formatValue(this.field, this.shown);
        this.clear();
      }
    });
    this.entry.addEventListener("change", () => this.submitEntry());
    if (!this.range) return;
    this.range.addEventListener("input", () => {
      this.hold();
      this.entry.value = formatValue(this.field, fromSlider(this.field, this.range.value));
      this.clear();
    });
    this.range.addEventListener("change", () => this.submit(fromSlider(this.field, this.range.value)));
  }

  hold() {
    this.heldUntil = performance.now() + EDIT_HOLD_MS;
  }

  clear() {
    this.entry.classList.remove("invalid");
    this.entry.removeAttribute("aria-invalid");
    say(this.message, "", null);
  }

  /** Check the typed value; refuse it in place with the reason, or send it. */
  submitEntry() {
    const raw = this.entry.value;
    if (this.field === "bn_momentum" && raw.trim() === "") return; // cumulative has its own box
    const result = validate(this.field, raw, this.context());
    if (!result.ok) {
      this.entry.classList.add("invalid");
      this.entry.setAttribute("aria-invalid", "true");
      say(this.message, t(result.key, result.params), "error");
      this.heldUntil = Number.POSITIVE_INFINITY; // keep the refused text until fixed or Escape
      return;
    }
    if (this.range) this.range.value = String(toSlider(this.field, result.value));
    this.submit(result.value);
  }

  /**
   * Send a value; the control shows it at once as pending, then the server's answer.
   * Enter and the change that follows (leaving the box) would both send it: a value already
   * on its way, or the one the run already has, sends nothing, so one change is one event.
   */
  async submit(value) {
    if (!this.isActive()) return;
    if (value === this.inFlight) return;
    if (this.inFlight === undefined && value === this.current) {
      this.clear();
      return;
    }
    this.hold();
    this.clear();
    say(this.message, t("controls.sending"), "pending");
    this.nowValue.textContent = nowText(this.field, value);
    this.nowValue.classList.add("pending");
    this.inFlight = value;
    const sent = (this.sends = (this.sends ?? 0) + 1);
    const reply = await this.send({ [this.field]: value });
    // Only the newest send's answer settles the control: an older one may come back later.
    if (sent !== this.sends) return;
    this.inFlight = undefined;
    if (reply.ok) this.current = value;
    this.nowValue.classList.remove("pending");
    if (!reply.ok) {
      say(this.message, reply.message, "error");
      this.entry.classList.add("invalid");
      return;
    }
    say(this.message, `✓ ${t("controls.applied")}`, "ok");
    this.heldUntil = 0;
    setTimeout(() => {
      if (this.message.classList.contains("ok")) this.clear();
    }, 2500);
  }

  get pending() {
    return this.nowValue.classList.contains("pending");
  }

  /** Show the run's value (unless a person is editing) and the bounds. */
  show(value, { disabled, note = null }) {
    const log = boundOf(this.field).log ? ` · ${t("controls.logScale")}` : "";
    setText(this.bounds, note ?? `${t("controls.allowed", { bounds: boundsText(this.field) })}${log}`);
    setProperty(this.entry, "disabled", disabled || (this.field === "bn_momentum" && value === null));
    if (this.range) setProperty(this.range, "disabled", disabled);
    if (value !== undefined) this.current = value;
    if (!this.pending) setText(this.nowValue, nowText(this.field, value));
    const editing = document.activeElement === this.entry || performance.now() < this.heldUntil;
    if (!editing && value !== undefined && this.shown !== value) {
      this.entry.value = value === null ? "" : formatValue(this.field, value);
      if (this.range && value !== null) this.range.value = String(toSlider(this.field, value));
      this.shown = value;
    }
  }
}

/**
 * The config of a new run that starts over with the viewed run's settings as they are now
 * (after its changes): its config with today's learning rate, batch size and BN momentum,
 * and no schedule (its changes have happened; the new run keeps these values). Pure.
 */
export function restartConfig(config, settings) {
  const { schedule, ...rest } = config ?? {};
  const next = { ...rest };
  for (const field of ["lr", "batch_size", "bn_momentum"]) {
    if (settings && field in settings && (settings[field] !== null || field === "bn_momentum")) next[field] = settings[field];
  }
  return next;
}

/** Pause / resume, one step while paused, stop, and restart with the settings as they are
 * now; each acknowledged on screen at once. */
function createRunButtons(root, { send, stop, restart }) {
  const buttons = el("div", "buttons");
  const pause = el("button", "primary", { type: "button", id: "pause-button" });
  const step = el("button", "", { type: "button", id: "step-button", i18n: "controls.step" });
  const stopButton = el("button", "danger", { type: "button", id: "stop-button", i18n: "controls.stop" });
  const restartButton = el("button", "", { type: "button", id: "restart-button", i18n: "controls.restart" });
  buttons.append(pause, step, stopButton, restartButton);
  const message = el("p", "msg", { role: "status", "aria-live": "polite" });
  root.append(buttons, message, el("p", "muted small", { i18n: "controls.stepHint" }));
  let paused = false;
  let sending = false;

  function showPaused(value) {
    paused = value;
    setText(pause, t(paused ? "controls.resume" : "controls.pause"));
    pause.classList.toggle("is-paused", paused);
  }

  pause.addEventListener("click", async () => {
    const want = !paused;
    sending = true;
    showPaused(want);
    step.disabled = !want;
    say(message, t("controls.sending"), "pending");
    const reply = await send({ paused: want });
    sending = false;
    if (!reply.ok) showPaused(!want);
    say(message, reply.ok ? "" : reply.message, reply.ok ? null : "error");
  });
  step.addEventListener("click", async () => {
    say(message, t("controls.sending"), "pending");
    const reply = await send({ step: true });
    say(message, reply.ok ? `✓ ${t("status.step")} ${reply.run?.step ?? ""}` : reply.message, reply.ok ? "ok" : "error");
  });
  stopButton.addEventListener("click", async () => {
    // Stopping cannot be undone: the run ends for good (its data stays).
    if (!window.confirm(t("controls.stopConfirm"))) return;
    stopButton.disabled = true;
    const reply = await stop();
    say(message, reply.ok ? "" : reply.message, reply.ok ? null : "error");
  });
  restartButton.addEventListener("click", async () => {
    restartButton.disabled = true;
    say(message, t("controls.sending"), "pending");
    const reply = await restart();
    restartButton.disabled = false;
    say(message, reply.ok ? "" : reply.message, reply.ok ? null : "error");
  });

  return {
    update(runState, active, restartable) {
      if (!sending) showPaused(runState === "paused");
      setProperty(pause, "disabled", !active);
      setProperty(step, "disabled", !active || !paused);
      setProperty(stopButton, "disabled", !active);
      setProperty(restartButton, "hidden", !restartable);
    },
  };
}

/**
 * Build the live controls into `root`. `send(changes)` returns a promise of {ok, message,
 * run}; `stop()` stops the run. Returns {update(state)}.
 */
export function createLiveControls(root, { send, stop, restart }) {
  let context = { nTrain: null, variants: [] };
  let active = false;
  let lrOpen = false; // the learning rate also opens for a watched run that allows it
  const options = { send, context: () => context, isActive: () => active };
  const lr = new NumberControl("lr", { ...options, isActive: () => lrOpen, slider: true });
  const batch = new NumberControl("batch_size", { ...options, slider: true });
  const momentum = new NumberControl("bn_momentum", { ...options, slider: false });

  root.replaceChildren();
  const noRun = el("p", "muted no-run");
  root.append(el("h2", "", { i18n: "controls.title" }), noRun, lr.box, batch.box, momentum.box);

  const batchNote = el("p", "warn batch-note");
  batchNote.hidden = true;
  batch.box.append(batchNote);
  function updateBatchNote() {
    const skipped = skippedAt(Number(batch.entry.value), context.variants);
    setProperty(batchNote, "hidden", skipped.length === 0);
    if (skipped.length) setText(batchNote, t("controls.batchOne", { variants: skipped.map(variantName).join(", ") }));
  }
  batch.entry.addEventListener("input", updateBatchNote);
  batch.range.addEventListener("input", updateBatchNote);

  const cumulativeLabel = el("label", "check");
  const cumulative = el("input", "", { type: "checkbox", id: "control-cumulative" });
  cumulativeLabel.append(cumulative, el("span", "", { i18n: "controls.cumulative" }));
  momentum.box.insertBefore(cumulativeLabel, momentum.box.lastChild);
  cumulative.addEventListener("change", () => {
    momentum.entry.disabled = cumulative.checked;
    if (cumulative.checked) {
      momentum.submit(null);
      return;
    }
    // Back to an exponential average: the typed momentum, or BN's usual 0.1.
    if (momentum.entry.value.trim() === "") momentum.entry.value = "0.1";
    momentum.submitEntry();
  });

  const buttons = createRunButtons(root, { send, stop, restart });

  function update(state) {
    const runState = state.runState;
    // A watched run is trained by the user's own process: its settings change there.
    const watched = state.hello?.config?.source === "watch";
    const running = runState !== null && ACTIVE_STATES.has(runState);
    active = running && !watched;
    // A watched run's program may let the page change its learning rate (live_lr=True).
    lrOpen = running && (!watched || (state.hello?.config?.controls ?? []).includes("lr"));
    const hasRun = state.hello !== null;
    context = { nTrain: state.hello?.dataset?.n_train ?? null, variants: state.variants };
    setProperty(noRun, "hidden", hasRun && active);
    // Before the run's first message the page is loading it, not without one.
    setText(noRun, watched
      ? t(lrOpen ? "controls.watchedLr" : "controls.watched")
      : hasRun && runState !== null
        ? t("controls.ended", { state: t(`runstate.${runState}`) })
        : t("controls.loading"));
    const hasBn = batchStatVariants(state).length > 0;
    lr.show(state.settings.lr, { disabled: !lrOpen });
    batch.show(state.settings.batch_size, { disabled: !active });
    momentum.show(state.settings.bn_momentum, { disabled: !active || !hasBn, note: hasBn || !hasRun ? null : t("controls.noBn") });
    setProperty(cumulative, "disabled", !active || !hasBn);
    // While a change is on its way the box shows what the person chose, not the old setting.
    if (!momentum.pending) cumulative.checked = state.settings.bn_momentum === null;
    // A run of the server's own can start over with today's settings (a sweep or a watched
    // run cannot: the one has its own values, the other is the user's program).
    const config = state.hello?.config;
    buttons.update(runState, active, Boolean(config) && !watched && config.kind !== "sweep");
    updateBatchNote();
  }

  return { update };
}
