/** Pure derivations from state columns to the arrays a chart plots (new arrays every call). */

/** The steps of the columns (the x axis of every time chart). */
export function stepsOf(columns) {
  return columns.map((column) => column.step);
}

/** A variant's per-frame training metric ("loss" or "acc"); null where absent or non-finite. */
export function trainMetric(columns, variant, key) {
  return columns.map((column) => finiteOrNull(column.variants[variant]?.[key]));
}

/** A variant's test metric over the test points: {x: steps, y: values}. */
export function testMetric(tests, variant, key) {
  const x = [];
  const y = [];
  for (const point of tests) {
    const entry = point.variants[variant];
    if (!entry) continue;
    x.push(point.step);
    y.push(finiteOrNull(entry[key]));
  }
  return { x, y };
}

/**
 * One variant's gradient ICS at one layer (0-based; depth is the output layer) over the
 * ICS points: `key` is "grad_diff" (‖G − G′‖₂) or "grad_cos" (cos(G, G′)). Points without
 * this variant (skipped, diverged) are left out; non-finite values become gaps.
 */
export function icsMetric(points, variant, layer, key) {
  const x = [];
  const y = [];
  for (const point of points) {
    const layers = point.variants[variant];
    if (!layers) continue;
    x.push(point.step);
    y.push(finiteOrNull(layers[layer]?.[key]));
  }
  return { x, y };
}

/** The number of layers the ICS points measure (hidden layers + output), 0 when none. */
export function icsLayers(points) {
  let n = 0;
  for (const point of points) for (const layers of Object.values(point.variants)) n = Math.max(n, layers.length);
  return n;
}

/** One layer's stats for one variant in one column, or null (skipped, diverged, no such layer). */
export function layerOf(column, variant, layer) {
  return column?.variants?.[variant]?.layers?.[layer] ?? null;
}

/** One tap's stats (counts, percentiles, ...) or null. */
export function tapOf(column, variant, layer, tap) {
  return layerOf(column, variant, layer)?.taps?.[tap] ?? null;
}

/** Percentile lines of a tap over time: p[k] is the k-th percentile (hello.percentiles order). */
export function percentileLines(columns, variant, layer, tap, count) {
  const p = Array.from({ length: count }, () => []);
  for (const column of columns) {
    const values = tapOf(column, variant, layer, tap)?.percentiles;
    for (let k = 0; k < count; k += 1) p[k].push(finiteOrNull(values?.[k]));
  }
  return p;
}

/** A layer's drift (1-Wasserstein distance of act_input to its previous frame) over time. */
export function driftLine(columns, variant, layer, key = "w1") {
  return columns.map((column) => finiteOrNull(layerOf(column, variant, layer)?.drift?.[key]));
}

/**
 * One typical unit's 15th/50th/85th percentiles over time (Ioffe & Szegedy's "typical
 * sigmoid"): the activation input of the unit the server chose (drift_fixed.unit), on the
 * same held-out examples every frame. {lines: [p15, p50, p85], unit} (unit: the newest).
 */
export function typicalUnitLines(columns, variant, layer) {
  const lines = [[], [], []];
  let unit = null;
  for (const column of columns) {
    const fixed = layerOf(column, variant, layer)?.drift_fixed;
    const values = Array.isArray(fixed?.unit_percentiles) ? fixed.unit_percentiles : [];
    for (let k = 0; k < 3; k += 1) lines[k].push(finiteOrNull(values[k]));
    if (Number.isInteger(fixed?.unit)) unit = fixed.unit;
  }
  return { lines, unit };
}

/** A scalar layer field (saturated, dead, grad_norm) over time. */
export function layerScalar(columns, variant, layer, key) {
  return columns.map((column) => finiteOrNull(layerOf(column, variant, layer)?.[key]));
}

export const BN_FIELDS = ["batch_mean", "batch_var", "running_mean", "running_var", "gamma", "beta"];

/**
 * One BN channel's batch and running statistics and γ, β over time. A projected stream's
 * `bn` holds only the channels it names (`channels`, the lists in that order); a channel
 * it does not hold reads as missing. Without `channels` the lists hold every channel.
 */
export function bnChannel(columns, variant, layer, channel) {
  const out = Object.fromEntries(BN_FIELDS.map((field) => [field, []]));
  for (const column of columns) {
    const bn = layerOf(column, variant, layer)?.bn;
    const index = Array.isArray(bn?.channels) ? bn.channels.indexOf(channel) : channel;
    for (const field of BN_FIELDS) out[field].push(index < 0 ? null : finiteOrNull(bn?.[field]?.[index]));
  }
  return out;
}

/**
 * A histogram as shares of the batch: counts / every value measured (in range, under,
 * over and non-finite), so a distribution that leaves the range visibly loses mass.
 */
export function histogramShares(stats) {
  if (!stats || !Array.isArray(stats.counts)) return null;
  const counts = stats.counts;
  let total = (stats.underflow ?? 0) + (stats.overflow ?? 0) + (stats.nonfinite ?? 0);
  for (const c of counts) total += c;
  const shares = counts.map((c) => (total > 0 ? c / total : 0));
  return {
    shares,
    underflow: total > 0 ? (stats.underflow ?? 0) / total : 0,
    overflow: total > 0 ? (stats.overflow ?? 0) / total : 0,
    nonfinite: total > 0 ? (stats.nonfinite ?? 0) / total : 0,
  };
}

/**
 * The bins that held part of the batch in any kept column of any variant, widened by
 * `margin` bins: [first, last], or null when nothing is binned yet. The fixed edges are
 * chosen from the first batch and are often much wider than where the values live; the
 * charts show this part of them, the same for every variant and stable over time.
 */
export function occupiedBins(columns, variants, layer, tap, margin = 1) {
  let lo = Infinity;
  let hi = -Infinity;
  let bins = 0;
  for (const column of columns) {
    for (const variant of variants) {
      const counts = tapOf(column, variant, layer, tap)?.counts;
      if (!counts) continue;
      bins = counts.length;
      for (let i = 0; i < Math.min(lo, counts.length); i += 1) {
        if (counts[i] > 0) {
          lo = i;
          break;
        }
      }
      for (let i = counts.length - 1; i >= 0 && i > hi; i -= 1) {
        if (counts[i] > 0) {
          hi = i;
          break;
        }
      }
    }
  }
  if (lo > hi) return null;
  return [Math.max(0, lo - margin), Math.min(bins - 1, hi + margin)];
}

/** Bin centres of fixed bin edges. */
export function binCentres(edges) {
  const centres = [];
  for (let i = 0; i + 1 < edges.length; i += 1) centres.push((edges[i] + edges[i + 1]) / 2);
  return centres;
}

/** Events shown on time axes: settings changes, divergences, skipped variants; newest `limit`. */
export function markedEvents(events, limit = 60) {
  const marked = events.filter((event) => MARKED_KINDS.has(event.kind) && typeof event.step === "number");
  return marked.slice(Math.max(0, marked.length - limit));
}

const MARKED_KINDS = new Set(["lr", "batch_size", "bn_momentum", "diverged", "skipped"]);

/** Index of the column whose step is nearest to `step` (columns sorted by step); -1 if none. */
export function nearestColumn(columns, step) {
  return nearestIndex(columns.length, (i) => columns[i].step, step);
}

/** Of n ascending values at(0) … at(n - 1), the index of the one nearest x (a tie: the
 * earlier); -1 when n is 0. */
export function nearestIndex(n, at, x) {
  if (n === 0) return -1;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (at(mid) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 && Math.abs(at(lo - 1) - x) <= Math.abs(at(lo) - x) ? lo - 1 : lo;
}

/**
 * Where `step` falls along the columns, as a fractional column index (columns sorted by
 * step; linear between neighbours), clamped to [0, n - 1]. The heatmap places event
 * markers and the step cursor with it.
 */
export function columnPosition(columns, step) {
  const n = columns.length;
  if (n === 0) return 0;
  if (step <= columns[0].step) return 0;
  if (step >= columns[n - 1].step) return n - 1;
  const i = nearestColumn(columns, step);
  const j = columns[i].step <= step ? i : i - 1;
  const a = columns[j].step;
  const b = columns[j + 1].step;
  return j + (b > a ? (step - a) / (b - a) : 0);
}

/** Smallest and largest finite value over several arrays: [lo, hi], or null. */
export function extent(arrays) {
  let lo = Infinity;
  let hi = -Infinity;
  // Index loops: this walks every point of a chart on each redraw, and an iterator's
  // result objects would be garbage the page then has to collect.
  for (let a = 0; a < arrays.length; a += 1) {
    const values = arrays[a];
    for (let i = 0; i < values.length; i += 1) {
      const v = values[i];
      if (v === null || !Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

export function finiteOrNull(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/**
 * How far two variants' units moved on the fixed held-out set over the columns (the lesson's
 * claim; claims.py's unit_drift): the sums of drift_fixed.unit_median, each frame's median
 * over units of each unit's W1 to the frame before, over the columns where both variants have
 * it, and their ratio. Pure; null with fewer than two such columns.
 */
export function unitDrift(columns, variant, reference, layer) {
  let moved = 0;
  let referenceMoved = 0;
  let frames = 0;
  for (const column of columns) {
    const a = layerOf(column, variant, layer)?.drift_fixed?.unit_median;
    const b = layerOf(column, reference, layer)?.drift_fixed?.unit_median;
    if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
    moved += a;
    referenceMoved += b;
    frames += 1;
  }
  if (frames < 2) return null;
  const ratio = referenceMoved > 0 ? moved / referenceMoved : Number.POSITIVE_INFINITY;
  return { moved, reference: referenceMoved, ratio, frames };
}
