/** Axis ticks for the canvas charts: 1-2-5 steps, labels as Plotly writes them, never touching. */

/** The smallest of 1, 2, 5 × 10ⁿ at least `rough` (an axis' tick spacing, as Plotly picks it). */
export function niceStep(rough) {
  if (!(rough > 0) || !Number.isFinite(rough)) return 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 5]) if (m * power >= rough * (1 - 1e-9)) return m * power;
  return 10 * power;
}

/** Tick values on [lo, hi]: multiples of a 1-2-5 step, about `count` of them at most. */
export function linearTicks(lo, hi, count) {
  if (!(hi > lo)) return { step: 1, values: Number.isFinite(lo) ? [lo] : [] };
  return ticksOfStep(lo, hi, niceStep((hi - lo) / Math.max(1, count)));
}

/** The multiples of `step` on [lo, hi]. */
export function ticksOfStep(lo, hi, step) {
  const values = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1) values.push(Number((k * step).toPrecision(12)));
  return { step, values };
}

const MINUS = "\u2212";

/**
 * A tick's label as Plotly writes a linear axis' by default: as many decimals as the step
 * needs, a true minus sign, and thousands as "k" once the step is a thousand or more
 * (500, 1000, 1500; but 1k, 2k, 20k).
 */
export function tickLabel(value, step) {
  const thousands = step >= 1000;
  const shown = thousands ? value / 1000 : value;
  const unit = thousands ? step / 1000 : step;
  const decimals = Math.max(0, -Math.floor(Math.log10(unit) + 1e-9));
  const text = Math.abs(shown).toFixed(decimals);
  if (Number(text) === 0) return "0";
  return `${shown < 0 ? MINUS : ""}${text}${thousands ? "k" : ""}`;
}

/**
 * Ticks on [lo, hi] whose labels, `span` pixels apart end to end, never touch: at most
 * `count`, fewer (a wider 1-2-5 step) where labels measured by `measure` would meet.
 * `label(value, step)` writes them (tickLabel by default).
 */
export function spacedTicks(lo, hi, count, span, measure, label = tickLabel) {
  let { step, values } = linearTicks(lo, hi, count);
  for (let tries = 0; tries < 8; tries += 1) {
    const labels = values.map((v) => label(v, step));
    const widths = labels.map(measure);
    const px = (v) => ((v - lo) / (hi - lo)) * span;
    const fits = values.every((v, i) => i === 0 || px(v) - px(values[i - 1]) >= (widths[i] + widths[i - 1]) / 2 + 8);
    if (fits || values.length <= 1) return { values, labels };
    ({ step, values } = ticksOfStep(lo, hi, niceStep(step * 1.01)));
  }
  return { values: [], labels: [] };
}

/** A share as a percentage label ("20%", "2.5%"), with the decimals its tick step needs. */
export function percentLabel(value, step) {
  return `${tickLabel(value * 100, step * 100)}%`;
}

/** [lo, hi] with `pad` of its span on each side; a single value gets ±1 (or ±10% of it). */
export function padded(range, pad = 0.05) {
  if (!range) return [0, 1];
  const [lo, hi] = range;
  if (hi > lo) return [lo - pad * (hi - lo), hi + pad * (hi - lo)];
  const half = lo === 0 ? 1 : Math.abs(lo) * 0.1;
  return [lo - half, lo + half];
}
