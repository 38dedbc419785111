/** The "new run" form: a RunConfig built from the fields, checked in place, then POST /api/runs. */

import { createRun, fieldErrors } from "./api.js";
import { boundsText, formatNumber, validate } from "./bounds.js";
import { onLangChange, t, translatePage } from "./i18n.js";
import { el } from "./dom.js";
import { choicesOf, defaultsOf, presetsOf, sweepsOf, variantsOf } from "./rules.js";
import { durationText, estimateSeconds, LONG_SWEEP_S, parseSweepValues } from "./sweep.js";

/** Every preset the form offers: the runs', then the sweeps' (each marked "sweep" in its text). */
const allPresets = () => ({ ...presetsOf(), ...sweepsOf() });

/** A preset's form values ("" = none): the server's defaults, then the preset's values (pure). */
export function presetValues(name, defaults = defaultsOf(), presets = allPresets()) {
  if (!presets[name]) return { ...defaults, preset: "" };
  return { ...defaults, ...presets[name].values, preset: name };
}

const NUMBER_FIELDS = ["depth", "width", "init_std", "lr", "batch_size", "bn_momentum", "steps", "probe_every", "test_every", "bins", "seed"];
const SELECT_FIELDS = ["dataset", "activation", "init", "optimizer"];

/** The config to POST, from the form's raw values; {config} or {errors: {field: message}}. */
export function buildConfig(raw, { cumulative }) {
  const config = {};
  const errors = {};
  for (const field of SELECT_FIELDS) config[field] = raw[field];
  config.variants = raw.variants;
  if (raw.preset) config.preset = raw.preset;
  const sweep = sweepsOf()[raw.preset];
  if (sweep) {
    const parsed = parseSweepValues(raw.sweep_values, sweep.max_points);
    if (parsed.ok) config.sweep_values = parsed.values;
    else errors.sweep_values = t(parsed.key, parsed.params);
  }
  if (!raw.variants?.length) errors.variants = t("err.variants");
  for (const field of NUMBER_FIELDS) {
    if (field === "bn_momentum" && cumulative) {
      config.bn_momentum = null;
      continue;
    }
    const result = validate(field, raw[field], field === "batch_size" ? { variants: raw.variants } : {});
    if (result.ok) config[field] = result.value;
    else errors[field] = t(result.key, result.params);
  }
  return Object.keys(errors).length ? { errors } : { config };
}

/**
 * Build the form into `root` (a <details>). onCreated(runInfo) is called after a 201.
 * getCurrentConfig() gives the viewed run's config, to start from.
 */
export function createSetupForm(root, { onCreated, getCurrentConfig }) {
  const choices = choicesOf();
  const defaults = defaultsOf();
  const presets = allPresets();
  const inputs = {};
  const messages = {};
  const summary = el("summary", "", { i18n: "setup.title" });
  const form = el("form", "setup", { novalidate: "" });
  const intro = el("p", "muted small", { i18n: "setup.intro" });
  const grid = el("div", "setup-grid");
  const general = el("p", "msg", { role: "status", "aria-live": "polite" });
  const buttons = el("div", "buttons");
  const submit = el("button", "primary", { type: "submit", i18n: "setup.submit" });
  const copy = el("button", "", { type: "button", i18n: "setup.fromCurrent" });
  buttons.append(submit, copy);
  form.append(intro, grid, general, buttons);
  root.replaceChildren(summary, form);
  let cumulative = null;
  let sweepBox = null;
  let sweepNote = null;

  function field(name, control, { wide = false, hint = "" } = {}) {
    const box = el("div", `field${wide ? " wide" : ""}`, { "data-field": name });
    const label = el(control.tagName === "DIV" ? "span" : "label", "field-label", { for: control.id, i18n: `setup.${name}` });
    box.append(label, control);
    if (hint) {
      const bounds = el("span", "bounds");
      bounds.textContent = hint;
      box.append(bounds);
    }
    const message = el("span", "msg");
    box.append(message);
    messages[name] = message;
    grid.append(box);
    return box;
  }

  /** Text for a choice: its i18n message when there is one (translatePage keeps it current). */
  function choiceText(node, key, fallback) {
    if (t(key) === key) node.textContent = fallback;
    else {
      node.dataset.i18n = key;
      node.textContent = t(key);
    }
  }

  function build() {
    grid.replaceChildren();
    const preset = el("select", "", { id: "setup-preset" });
    for (const name of ["", ...Object.keys(presets)]) {
      const opt = el("option", "", { value: name, i18n: `preset.${name || "none"}` });
      preset.append(opt);
    }
    // A preset fills the fields with its values; "none" puts back the server's defaults.
    preset.addEventListener("change", () => fill(presetValues(preset.value, defaults, presets)));
    inputs.preset = preset;
    field("preset", preset, { wide: true });
    // A sweep's values, shown only while a sweep preset is chosen, with how long it will take.
    const sweepValues = el("input", "", { id: "setup-sweep_values", type: "text", autocomplete: "off" });
    inputs.sweep_values = sweepValues;
    sweepBox = field("sweep_values", sweepValues, { wide: true });
    sweepNote = el("span", "sweep-estimate");
    sweepBox.insertBefore(sweepNote, sweepBox.lastChild);
    sweepValues.addEventListener("input", showSweep);
    for (const name of ["dataset", "activation", "init", "optimizer"]) {
      const select = el("select", "", { id: `setup-${name}` });
      for (const option of choices[name]) {
        const opt = el("option", "", { value: option });
        choiceText(opt, `${name}.${option}`, option);
        select.append(opt);
      }
      inputs[name] = select;
      field(name, select);
    }
    const checks = el("div", "checks", { id: "setup-variants" });
    inputs.variants = [];
    for (const variant of choices.variants) {
      const label = el("label", "check");
      const box = el("input", "", { type: "checkbox", value: variant });
      const text = el("span", "");
      choiceText(text, `variantLong.${variant}`, variantsOf()[variant]?.description ?? variant);
      label.append(box, text);
      checks.append(label);
      inputs.variants.push(box);
    }
    field("variants", checks, { wide: true });
    for (const name of NUMBER_FIELDS) {
      const input = el("input", "", { id: `setup-${name}`, type: "text", inputmode: "decimal", autocomplete: "off", size: "7" });
      inputs[name] = input;
      const box = field(name, input, { hint: boundsText(name) });
      if (name === "steps") input.addEventListener("input", showSweep);
      if (name === "bn_momentum") {
        const label = el("label", "check");
        cumulative = el("input", "", { type: "checkbox" });
        label.append(cumulative, el("span", "", { i18n: "controls.cumulative" }));
        box.insertBefore(label, box.lastChild);
        cumulative.addEventListener("change", () => (input.disabled = cumulative.checked));
      }
    }
    translatePage(root);
    fill(getCurrentConfig() ?? defaults);
  }

  function fill(config) {
    const values = { ...defaults, ...config };
    inputs.preset.value = presets[values.preset] ? values.preset : "";
    for (const name of SELECT_FIELDS) if (choices[name].includes(values[name])) inputs[name].value = values[name];
    for (const box of inputs.variants) box.checked = (values.variants ?? []).includes(box.value);
    for (const name of NUMBER_FIELDS) inputs[name].value = values[name] === null || values[name] === undefined ? "" : formatNumber(values[name]);
    cumulative.checked = values.bn_momentum === null;
    inputs.bn_momentum.disabled = cumulative.checked;
    if (cumulative.checked) inputs.bn_momentum.value = "0.1";
    inputs.sweep_values.value = (sweepsOf()[inputs.preset.value]?.sweep_values ?? []).map(formatNumber).join(", ");
    clear();
    showSweep();
  }

  /** The sweep values' field and the sweep's estimated length, for a sweep preset only. */
  function showSweep() {
    const sweep = sweepsOf()[inputs.preset.value];
    sweepBox.hidden = !sweep;
    if (!sweep) return;
    const parsed = parseSweepValues(inputs.sweep_values.value, sweep.max_points);
    const points = parsed.ok ? parsed.values.length : sweep.sweep_values.length;
    const seconds = estimateSeconds(sweep, Number(inputs.steps.value), points);
    const long = seconds !== null && seconds > LONG_SWEEP_S;
    sweepNote.className = `sweep-estimate${long ? " long" : ""}`;
    sweepNote.textContent = [t("setup.sweepHint"), seconds === null ? "" : t(long ? "sweep.estimateLong" : "sweep.estimate", { time: durationText(seconds) })].join(" ");
  }

  function clear() {
    for (const message of Object.values(messages)) {
      message.textContent = "";
      message.className = "msg";
    }
    for (const input of grid.querySelectorAll(".invalid")) input.classList.remove("invalid");
    general.textContent = "";
    general.className = "msg";
  }

  function show(errors) {
    for (const [name, text] of Object.entries(errors)) {
      if (name === "general") continue;
      const message = messages[name];
      if (!message) continue;
      message.textContent = Array.isArray(text) ? text.join("; ") : text;
      message.className = "msg error";
      const input = inputs[name];
      if (input && !Array.isArray(input)) input.classList.add("invalid");
    }
  }

  function rawValues() {
    const raw = {};
    for (const name of SELECT_FIELDS) raw[name] = inputs[name].value;
    raw.preset = inputs.preset.value;
    raw.sweep_values = inputs.sweep_values.value;
    raw.variants = inputs.variants.filter((box) => box.checked).map((box) => box.value);
    for (const name of NUMBER_FIELDS) raw[name] = inputs[name].value;
    return raw;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    const built = buildConfig(rawValues(), { cumulative: cumulative.checked });
    if (built.errors) {
      show(built.errors);
      return;
    }
    submit.disabled = true;
    general.className = "msg pending";
    general.textContent = t("setup.starting");
    const answer = await createRun(built.config);
    submit.disabled = false;
    general.className = "msg";
    general.textContent = "";
    if (answer.ok) {
      onCreated(answer.body);
      return;
    }
    if (answer.status === 0) {
      general.className = "msg error";
      general.textContent = t("err.network");
      return;
    }
    const errors = fieldErrors(answer.body, Object.keys(inputs));
    show(errors);
    const generalText = [...errors.general];
    if (answer.status === 429) generalText.unshift(t("err.tooMany"));
    if (generalText.length) {
      general.className = "msg error";
      general.textContent = generalText.join(" · ");
    }
  });
  copy.addEventListener("click", () => fill(getCurrentConfig() ?? defaults));
  form.addEventListener("input", (event) => {
    event.target.classList?.remove("invalid");
  });

  build();
  onLangChange(showSweep);
  return { fill: (config) => fill(config ?? defaults) };
}
