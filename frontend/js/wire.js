/** Reads a compact (v2) frame back into the dense shape every chart reads (v1's taps). */

// Bin counts a v2 tap leaves out when they are 0.
const OUTSIDE_KEYS = ["underflow", "overflow", "nonfinite"];

/**
 * One tap with its counts dense again: `counts` holds bins `first` .. `first + counts.length - 1`
 * of `bins`, zeros elsewhere; missing under/overflow and non-finite counts are 0. A tap
 * without counts (a projected stream's other taps) stays without: the charts read that as
 * "no histogram". `bins` < 0 (edges unknown) keeps just the span sent.
 */
export function expandTap(tap, bins) {
  if (tap === null || typeof tap !== "object") return tap;
  const expanded = { ...tap };
  delete expanded.first;
  for (const key of OUTSIDE_KEYS) expanded[key] = tap[key] ?? 0;
  if (Array.isArray(tap.counts)) {
    const first = Number.isInteger(tap.first) && tap.first > 0 ? tap.first : 0;
    // Never shorter than what was sent: a span past the edges keeps its counts.
    const dense = new Array(Math.max(bins, first + tap.counts.length)).fill(0);
    tap.counts.forEach((count, i) => {
      dense[first + i] = count;
    });
    expanded.counts = dense;
  }
  return expanded;
}

/**
 * A layer's taps with references resolved and counts dense. A tap written as a string names
 * an earlier tap of the layer with the same measurements; it becomes that tap's very object
 * (null when the name is unknown). binsOf(tap) is the number of bins of the tap's edges.
 */
export function expandTaps(taps, binsOf) {
  if (taps === null || typeof taps !== "object") return taps;
  const out = {};
  for (const [name, value] of Object.entries(taps)) {
    out[name] = typeof value === "string" ? (out[value] ?? null) : expandTap(value, binsOf(name));
  }
  return out;
}

/**
 * A v2 frame in v1's shape (a new object; the message is left as it was). Only the taps
 * differ between the two; binsOf(variant, layer, tap) is the number of bins of the hello's
 * edges for that tap.
 */
export function expandFrame(frame, binsOf) {
  const variants = {};
  for (const [name, entry] of Object.entries(frame.variants ?? {})) {
    if (!Array.isArray(entry?.layers)) {
      variants[name] = entry;
      continue;
    }
    const layers = entry.layers.map((layer, i) =>
      layer && typeof layer === "object" && "taps" in layer ? { ...layer, taps: expandTaps(layer.taps, (tap) => binsOf(name, i, tap)) } : layer,
    );
    variants[name] = { ...entry, layers };
  }
  return { ...frame, variants };
}
