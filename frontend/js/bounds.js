/** Checking typed values against the server's bounds (GET /api/rules), and slider scales. */

import { boundOf as serverBound, usesBatchStats } from "./rules.js";

// How the page draws a field's slider: presentation, not a bound (bounds come from the server).
const SLIDERS = {
  lr: { log: true, sliderMin: 1e-4 },
  batch_size: { log: true },
};

/** A field's bound from the server's rules, with the page's slider hints. */
export function boundOf(field) {
  const bound = serverBound(field);
  return bound ? { ...bound, ...SLIDERS[field] } : undefined;
}

/** The bounds as interval notation, e.g. "(0, 10]" or "[1, 4096]". */
export function boundsText(field) {
  const b = boundOf(field);
  if (!b) return "";
  return `${b.minOpen ? "(" : "["}${formatNumber(b.min)}, ${formatNumber(b.max)}${b.maxOpen ? ")" : "]"}`;
}

/**
 * Check a typed value for `field`. Returns {ok: true, value} or {ok: false, key, params},
 * where key names an i18n message ("err.*") so the reason shows in the page's language.
 * `context` may hold {nTrain, variants} to check batch size against the run's data.
 */
export function validate(field, raw, context = {}) {
  const b = boundOf(field);
  if (!b) return { ok: false, key: "err.unknownField", params: { field } };
  const text = typeof raw === "string" ? raw.trim() : raw;
  if (b.nullable && (text === null || text === "")) return { ok: true, value: null };
  if (text === "" || text === null || text === undefined) return { ok: false, key: "err.empty", params: {} };
  const value = typeof text === "number" ? text : parseNumber(text);
  if (value === null || !Number.isFinite(value)) return { ok: false, key: "err.notNumber", params: { value: String(raw) } };
  if (b.integer && !Number.isInteger(value)) return { ok: false, key: "err.integer", params: { value } };
  const range = { min: formatNumber(b.min), max: formatNumber(b.max), bounds: boundsText(field) };
  if (b.minOpen ? value <= b.min : value < b.min) return { ok: false, key: b.minOpen ? "err.gt" : "err.ge", params: range };
  if (b.maxOpen ? value >= b.max : value > b.max) return { ok: false, key: b.maxOpen ? "err.lt" : "err.le", params: range };
  if (field === "batch_size") {
    if (context.nTrain && value > context.nTrain) return { ok: false, key: "err.batchData", params: { n: context.nTrain } };
    const variants = context.variants ?? [];
    if (value === 1 && variants.length > 0 && variants.every(usesBatchStats)) {
      return { ok: false, key: "err.batchOneBnOnly", params: {} };
    }
  }
  return { ok: true, value };
}

/** The variants a batch size leaves untrained (BN at batch size 1), for the in-place note. */
export function skippedAt(batchSize, variants) {
  return batchSize === 1 ? variants.filter(usesBatchStats) : [];
}

/** A number typed by a person: plain decimals and exponents ("1e-3"); anything else is null. */
export function parseNumber(text) {
  if (typeof text !== "string") return null;
  const t = text.trim().replace(/,/g, "");
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) return null;
  return Number(t);
}

// Log sliders map positions 0..SLIDER_STEPS onto [low, high] geometrically.
export const SLIDER_STEPS = 1000;

export function sliderRange(field) {
  const b = boundOf(field);
  return { low: b.sliderMin ?? b.min, high: b.max };
}

/** Slider position of a value (clamped to the slider's range). */
export function toSlider(field, value) {
  const { low, high } = sliderRange(field);
  const v = Math.min(high, Math.max(low, value));
  return Math.round((SLIDER_STEPS * Math.log(v / low)) / Math.log(high / low));
}

/** The value at a slider position: integers for integer fields, 2 significant digits otherwise. */
export function fromSlider(field, position) {
  const { low, high } = sliderRange(field);
  const v = low * Math.exp((Number(position) / SLIDER_STEPS) * Math.log(high / low));
  if (boundOf(field).integer) return Math.min(high, Math.max(low, Math.round(v)));
  return Math.min(high, Math.max(low, roundSignificant(v, 2)));
}

export function roundSignificant(value, digits) {
  if (value === 0 || !Number.isFinite(value)) return value;
  return Number(value.toPrecision(digits));
}

/** Short, exact-enough text for a number: 0.0001 → "1e-4", 4096 → "4096", 0.05 → "0.05". */
export function formatNumber(value) {
  if (value === null || value === undefined) return "—";
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e10) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e7)) return value.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e");
  return String(Number(value.toPrecision(4)));
}
