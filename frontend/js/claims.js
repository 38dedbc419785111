/** A lesson's claims judged on the page's state: the kinds of server/covshift/claims.py, same formulas. */

// docs/lessons.md states each formula; claims.py is the reference and tests/test_lessons.py
// runs both on the same records. Pure functions, no DOM: a claim is judged only once its step
// range has been run through (a frame at or past `to_step`) and holds enough points; before
// that `holds` is null. The page keeps at most its history capacity of frames: a range that was
// downsampled is judged on the frames it still holds.

import { unitDrift } from "./series.js";
import { columnsOf, testsOf } from "./state.js";

// Fewer points than this in a window say nothing about movement or spread (as claims.py).
const MIN_FRAMES = 2;
const MIN_TESTS = 2;
const MIN_LOSS_FRAMES = 3; // two frame-to-frame differences at least

const finite = (value) => typeof value === "number" && Number.isFinite(value);

/**
 * What the kinds read, from either source: frames ({step, variants}), test points
 * ({step, variants: {name: test metrics or null}}), events ({step, kind, ...}) and the newest
 * frame's step.
 */
function fromRecords(records) {
  const frames = records.filter((r) => r?.type === "frame" && typeof r.step === "number");
  const tests = frames.map((frame) => ({
    step: frame.step,
    variants: Object.fromEntries(Object.entries(frame.variants ?? {}).map(([name, entry]) => [name, entry?.test ?? null])),
  }));
  const events = records.filter((r) => r?.type === "event");
  const lastStep = frames.reduce((newest, frame) => Math.max(newest, frame.step), Number.NEGATIVE_INFINITY);
  return { frames, tests, events, lastStep };
}

/** The same from the page's state; its test series is kept apart from (and no sparser than) its frames. */
function fromState(state) {
  return {
    frames: columnsOf(state),
    tests: testsOf(state),
    events: state.events,
    lastStep: typeof state.step === "number" ? state.step : Number.NEGATIVE_INFINITY,
  };
}

const inRange = (items, first, last) => items.filter((item) => first <= item.step && item.step <= last);

function judge(claim, value, numbers, also = true) {
  const passed = claim.compare === "<=" ? value <= claim.threshold : value >= claim.threshold;
  return { holds: passed && also, numbers: { value, ...numbers } };
}

const UNDECIDED = Object.freeze({ holds: null, numbers: {} });

function unitDriftRatio(claim, run) {
  const p = claim.params;
  if (!(run.lastStep >= p.to_step)) return UNDECIDED;
  const drift = unitDrift(inRange(run.frames, p.from_step, p.to_step), p.variant, p.reference, p.layer);
  if (!drift) return UNDECIDED;
  return judge(claim, drift.ratio, { ratio: drift.ratio, moved: drift.moved, reference_moved: drift.reference });
}

function metricGap(claim, run) {
  const p = claim.params;
  if (!(run.lastStep >= p.to_step)) return UNDECIDED;
  const gaps = [];
  for (const point of inRange(run.tests, p.from_step, p.to_step)) {
    const a = point.variants?.[p.variant]?.[p.metric];
    const b = point.variants?.[p.reference]?.[p.reference_metric];
    if (finite(a) && finite(b)) gaps.push(a - b);
  }
  if (gaps.length < MIN_TESTS) return UNDECIDED;
  const gap = gaps.reduce((sum, g) => sum + g, 0) / gaps.length;
  return judge(claim, gap, { gap, gap_points: 100 * gap, tests: gaps.length });
}

/** Mean |Δ loss| between consecutive frames with a finite training loss; null with fewer than three. */
function lossSpread(frames, variant) {
  const losses = frames.map((frame) => frame.variants?.[variant]?.loss).filter(finite);
  if (losses.length < MIN_LOSS_FRAMES) return null;
  let sum = 0;
  for (let i = 1; i < losses.length; i += 1) sum += Math.abs(losses[i] - losses[i - 1]);
  return sum / (losses.length - 1);
}

function lossNoise(claim, run) {
  const p = claim.params;
  if (!(run.lastStep >= p.to_step)) return UNDECIDED;
  const before = lossSpread(inRange(run.frames, p.from_step, p.change_step - 1), p.variant);
  const after = lossSpread(inRange(run.frames, p.change_step, p.to_step), p.variant);
  if (before === null || after === null) return UNDECIDED;
  const ratio = before > 0 ? after / before : Number.POSITIVE_INFINITY;
  return judge(claim, ratio, { ratio, before, after });
}

/** Python's ==, for the JSON values an event holds. */
function same(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => key in b && same(a[key], b[key]));
}

/** Equal, or for a list every wanted item present in the event's list. */
function matches(actual, wanted) {
  if (Array.isArray(wanted)) return Array.isArray(actual) && wanted.every((item) => actual.some((a) => same(a, item)));
  return same(actual, wanted);
}

function eventPresent(claim, run) {
  const p = claim.params;
  const wanted = p.match ?? {};
  const found = run.events.filter((event) => {
    const step = typeof event.step === "number" ? event.step : -1;
    return event.kind === p.kind && p.from_step <= step && step <= p.to_step && Object.entries(wanted).every(([key, value]) => matches(event[key], value));
  });
  // An event that happened cannot un-happen: it decides the claim as soon as it is seen.
  if (found.length === 0 && !(run.lastStep >= p.to_step)) return UNDECIDED;
  const numbers = { count: found.length };
  if (found.length) numbers.step = found[0].step;
  return judge(claim, found.length, numbers);
}

function xhatStandard(claim, run) {
  const p = claim.params;
  if (!(run.lastStep >= p.to_step)) return UNDECIDED;
  const moments = [];
  for (const frame of inRange(run.frames, p.from_step, p.to_step)) {
    const taps = frame.variants?.[p.variant]?.layers?.[p.layer]?.taps;
    const xhat = taps?.norm_xhat;
    const out = taps?.norm_out;
    if (xhat && out && [xhat.mean, xhat.std, out.mean, out.std].every(finite)) moments.push([xhat.mean, xhat.std, out.mean, out.std]);
  }
  if (moments.length < MIN_FRAMES) return UNDECIDED;
  const xhatMean = Math.max(...moments.map((m) => Math.abs(m[0])));
  const xhatStd = Math.max(...moments.map((m) => Math.abs(m[1] - 1)));
  const last = moments[moments.length - 1];
  const outMoved = Math.abs(last[2] - last[0]) + Math.abs(last[3] - last[1]);
  const numbers = { xhat_mean: xhatMean, xhat_std: xhatStd, out_mean: last[2], out_std: last[3], out_moved: outMoved };
  const standard = xhatMean <= p.mean_tol && xhatStd <= p.std_tol;
  return judge(claim, outMoved, numbers, standard);
}

/** The kinds, as claims.py's NUMBERS names them (each also reports "value"). */
export const KINDS = {
  unit_drift_ratio: unitDriftRatio,
  metric_gap: metricGap,
  loss_noise: lossNoise,
  event_present: eventPresent,
  xhat_standard: xhatStandard,
};

function evaluate(claim, run) {
  const kind = Object.prototype.hasOwnProperty.call(KINDS, claim?.kind) ? KINDS[claim.kind] : null;
  return kind ? kind(claim, run) : UNDECIDED; // a kind this page does not know stays undecided
}

/** Judge `claim` on the page's state (its kept frames, test points and events): {holds, numbers}. */
export function evaluateClaim(claim, state) {
  if (!state?.hello) return UNDECIDED;
  return evaluate(claim, fromState(state));
}

/** Judge `claim` on a run's hello and its frame and event records, as claims.evaluate does. */
export function evaluateRecords(claim, hello, records) {
  return evaluate(claim, fromRecords(records)); // hello: as claims.evaluate, for kinds that read it
}

/**
 * x rounded to `decimals` (≥ 0) places as Python's round(x, decimals) does: on x's exact binary
 * value, an exact half to the even digit (toFixed would take the larger: 0.0625 → 0.063).
 */
export function roundDecimal(x, decimals) {
  if (!Number.isFinite(x) || decimals > 100) return x; // past toFixed's reach: nothing to round
  // toFixed(100) is exact for every double below 1e21 whose expansion ends within 100 digits,
  // and rounding at digit 101 cannot make or break a tie at the digits rounded to here.
  const [whole, fraction] = Math.abs(x).toFixed(100).split(".");
  const digits = whole + fraction;
  const cut = whole.length + decimals;
  let kept = BigInt(digits.slice(0, cut) || "0");
  const rest = digits.slice(cut);
  const up = rest[0] > "5" || (rest[0] === "5" && (/[1-9]/.test(rest.slice(1)) || kept % 2n === 1n));
  if (up) kept += 1n;
  const text = kept.toString().padStart(decimals + 1, "0");
  const magnitude = Number(decimals > 0 ? `${text.slice(0, -decimals)}.${text.slice(-decimals)}` : text);
  return x < 0 ? -magnitude : magnitude;
}

/** x to `digits` significant digits, halves to even as Python's f"{x:.3g}". */
function roundSignificant(x, digits) {
  if (x === 0 || !Number.isFinite(x)) return x;
  const exponent = Number(x.toExponential(20).split("e")[1]);
  return roundDecimal(x, digits - 1 - exponent);
}

/**
 * A number in a claim's sentence, as claims.format_number writes it: ∞ for infinity; |x| ≥ 100
 * an integer; otherwise 3 significant digits, then at most 3 decimals, shortest form
 * (docs/lessons.md: String(Number(Number(x.toPrecision(3)).toFixed(3))), but with Python's
 * halves to even, so that 1.125 reads 1.12 on the page as in a report).
 */
export function formatClaimNumber(x) {
  if (x === Number.POSITIVE_INFINITY) return "∞";
  if (x === Number.NEGATIVE_INFINITY) return "-∞";
  if (Math.abs(x) >= 100) return String(roundDecimal(x, 0));
  return String(roundDecimal(roundSignificant(x, 3), 3));
}

/** The claim's sentence in `lang` for a judged result, its numbers filled in; null while undecided. */
export function claimSentence(claim, result, lang = "en") {
  if (result.holds === null) return null;
  const words = claim.text?.[lang] ?? claim.text?.en;
  if (!words) return null;
  const template = result.holds ? words.holds : words.fails;
  return template.replace(/\{(\w+)\}/g, (match, name) => (name in result.numbers ? formatClaimNumber(result.numbers[name]) : match));
}
