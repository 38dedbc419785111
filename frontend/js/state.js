/** Page state from the run's message stream: a pure reducer with bounded history (no DOM). */

import { expandFrame } from "./wire.js";

// Columns kept per run. A column is one frame; the heatmaps draw one pixel column each,
// so ~500 fills a chart's width without making every redraw walk thousands of frames.
export const DEFAULT_CAPACITY = 500;
// Events are few and each one matters; past this many the oldest go.
export const MAX_EVENTS = 500;

/**
 * A bounded, evenly spaced series: the same stride-doubling rule as the server's
 * history (server/covshift/web/history.py). Items are numbered 0, 1, 2, ... as they arrive;
 * the series keeps those whose number is a multiple of `stride`, plus the newest. When
 * the kept items would exceed `capacity`, the stride doubles and every second one goes.
 * So the first and the newest are always kept and the rest stay evenly spaced.
 */
export function createSeries(capacity) {
  if (!(capacity >= 2)) throw new RangeError("a series needs room for the first and the newest item");
  return { capacity, stride: 1, seen: 0, onStride: [], newest: null };
}

export function pushSeries(series, item) {
  const number = series.seen;
  series.seen += 1;
  if (number % series.stride !== 0) {
    series.newest = item;
    return;
  }
  series.newest = null;
  series.onStride.push(item);
  // capacity - 1 on the stride leaves room for an off-stride newest item.
  while (series.onStride.length > series.capacity - 1) {
    series.stride *= 2;
    // Kept item i has number i * oldStride: the even i are the new stride's multiples.
    series.onStride = series.onStride.filter((_, i) => i % 2 === 0);
    if (series.onStride[series.onStride.length - 1] !== item) series.newest = item;
  }
}

/** The kept items, oldest first (a new array each call, so charts see new arrays). */
export function seriesItems(series) {
  return series.newest === null ? series.onStride.slice() : [...series.onStride, series.newest];
}

export function seriesLength(series) {
  return series.onStride.length + (series.newest === null ? 0 : 1);
}

/** A fresh state: no run yet. */
export function createState({ capacity = DEFAULT_CAPACITY, maxEvents = MAX_EVENTS } = {}) {
  return {
    capacity,
    maxEvents,
    hello: null, // the run's hello (config, dataset, variants, percentiles, edges)
    variants: [], // variant names, in hello order
    depth: 0, // hidden layers
    runState: null, // created | running | paused | finished | stopped | failed
    runMessage: null, // why a run failed or stopped, when the server said
    run: null, // the newest RunInfo the server sent (in an ack)
    settings: { lr: null, batch_size: null, bn_momentum: null }, // what the next step uses
    step: null, // newest frame's step (updates taken before it)
    epoch: null,
    columns: createSeries(capacity), // one per frame: {step, epoch, lr, batch_size, variants}
    tests: createSeries(capacity), // frames with test metrics: {step, variants: {v: {loss, acc}}}
    ics: createSeries(capacity), // frames with gradient ICS: {step, variants: {v: [{grad_diff, grad_cos, grad_norm}]}}
    latest: null, // the newest column (the "current distribution")
    events: [], // {step, kind, ...} in arrival order, at most maxEvents
    skipped: null, // {step, variants, reason} while some variant cannot train
    diverged: {}, // variant -> {step, reason}
    lastError: null, // {id, message} of the newest "error" message
    frames: 0, // frames applied since the hello
    nonfiniteFrames: 0, // frames that carried a "nonfinite" map
    revision: 0, // bumps whenever something a chart shows changed
    legacyTaps: false, // a stored run with the older tap names (bn_xhat, bn_out)
  };
}

const HANDLERS = {
  hello: applyHello,
  frame: applyFrame,
  history: applyHistory,
  event: applyEvent,
  ack: applyAck,
  error: applyError,
  // Not from the stream: the page's poll of GET /api/runs, for a run whose stream has not
  // said its state yet.
  runinfo: applyRunInfo,
};

/**
 * Apply one parsed message to `state` and return the state to use from now on.
 * `hello` starts over (a new run, or the same run's stream after a reconnect: the server
 * sends hello and the whole history again, as one `history` message or frame by frame).
 * Unknown types are ignored, as the protocol asks readers to ignore what they do not know.
 * The state is updated in place (its history can be large); charts get new arrays from
 * the series helpers.
 */
export function applyMessage(state, msg) {
  if (msg === null || typeof msg !== "object") return state;
  const handler = Object.prototype.hasOwnProperty.call(HANDLERS, msg.type) ? HANDLERS[msg.type] : null;
  return handler ? handler(state, msg) : state;
}

// Tap names runs stored before the normalizer taps were renamed still carry.
const RENAMED_TAPS = { bn_xhat: "norm_xhat", bn_out: "norm_out" };

function renameKeys(object) {
  if (object === null || typeof object !== "object") return object;
  return Object.fromEntries(Object.entries(object).map(([k, v]) => [RENAMED_TAPS[k] ?? k, v]));
}

/** A stored run's hello with today's tap names (true when it needed them). */
function modernHello(msg) {
  const variants = msg.variants ?? {};
  if (!Object.values(variants).some((v) => (v?.taps ?? []).some((tap) => tap in RENAMED_TAPS))) return null;
  return {
    ...msg,
    variants: Object.fromEntries(
      Object.entries(variants).map(([name, v]) => [name, { ...v, taps: (v.taps ?? []).map((tap) => RENAMED_TAPS[tap] ?? tap) }]),
    ),
    edges: Array.isArray(msg.edges) ? msg.edges.map(renameKeys) : msg.edges,
  };
}

function modernFrame(msg) {
  const variants = {};
  for (const [name, entry] of Object.entries(msg.variants ?? {})) {
    const layers = Array.isArray(entry?.layers) ? entry.layers.map((layer) => ({ ...layer, taps: renameKeys(layer?.taps) })) : entry?.layers;
    variants[name] = { ...entry, layers };
  }
  return { ...msg, variants };
}

function applyHello(state, msg) {
  const fresh = createState({ capacity: state.capacity, maxEvents: state.maxEvents });
  const modern = modernHello(msg);
  fresh.legacyTaps = modern !== null;
  msg = modern ?? msg;
  const config = msg.config ?? {};
  fresh.hello = msg;
  fresh.variants = Object.keys(msg.variants ?? {});
  if (fresh.variants.length === 0 && Array.isArray(config.variants)) fresh.variants = [...config.variants];
  fresh.depth = layerCount(msg, config);
  fresh.settings = {
    lr: config.lr ?? null,
    batch_size: config.batch_size ?? null,
    bn_momentum: config.bn_momentum ?? null,
  };
  // Keep what the server told us about the run itself (state, id) across the reset.
  fresh.runState = state.runState;
  fresh.run = state.run;
  fresh.revision = state.revision + 1;
  return fresh;
}

/** Hidden layers shown: a watched run's models may differ, so the most any variant has. */
function layerCount(hello, config) {
  const perVariant = Object.values(hello.variant_edges ?? {}).filter(Array.isArray).map((layers) => layers.length);
  if (perVariant.length) return Math.max(...perVariant);
  return Array.isArray(hello.edges) ? hello.edges.length : (config.depth ?? 0);
}

/**
 * Channels (units) of one variant's hidden layer: the hello's layer description (a CNN's
 * conv channels, a watched model's normalizer), else the MLP's width; 0 when unknown.
 */
export function layerChannels(hello, variant, layer) {
  const described = hello?.variants?.[variant]?.layers?.[layer]?.channels;
  return Number.isInteger(described) ? described : (hello?.config?.width ?? 0);
}

/**
 * The fixed bin edges of one variant's layer and tap: its own where the hello gives each
 * variant edges (a watched run's models), else the run's shared ones; [] when unknown.
 */
export function edgesOf(state, variant, layer, tap) {
  const hello = state.hello;
  const own = hello?.variant_edges?.[variant];
  if (own) return own[layer]?.[tap] ?? [];
  return hello?.edges?.[layer]?.[tap] ?? [];
}

function applyFrame(state, msg) {
  if (state.hello === null || typeof msg.step !== "number") return state;
  if (state.legacyTaps) msg = modernFrame(msg);
  // v2 writes taps compactly (references, sparse counts, zeros left out); the charts read v1's.
  if (msg.v >= 2) msg = expandFrame(msg, (variant, layer, tap) => edgesOf(state, variant, layer, tap).length - 1);
  const variants = msg.variants ?? {};
  const column = {
    step: msg.step,
    epoch: msg.epoch ?? null,
    lr: msg.lr ?? null,
    batch_size: msg.batch_size ?? null,
    variants,
    nonfinite: msg.nonfinite ?? null,
  };
  pushSeries(state.columns, column);
  const tests = {};
  let hasTest = false;
  for (const [name, entry] of Object.entries(variants)) {
    if (entry && entry.test) {
      tests[name] = testPoint(entry.test);
      hasTest = true;
    }
    if (entry && entry.status === "diverged" && !state.diverged[name]) {
      state.diverged[name] = { step: entry.diverged_at ?? msg.step, reason: null };
    }
  }
  if (hasTest) pushSeries(state.tests, { step: msg.step, variants: tests });
  const ics = icsPoint(variants);
  if (ics) pushSeries(state.ics, { step: msg.step, variants: ics });
  if (state.skipped && state.skipped.variants.every((v) => variants[v]?.status === "training")) {
    state.skipped = null; // the skipped variants train again (batch size back above 1)
  }
  state.latest = column;
  state.step = msg.step;
  state.epoch = msg.epoch ?? state.epoch;
  if (state.runState === null || state.runState === "created") state.runState = "running";
  state.frames += 1;
  if (msg.nonfinite) state.nonfiniteFrames += 1;
  state.revision += 1;
  return state;
}

/**
 * The run's history in one message (after a hello, and again for each view change: the
 * server projects frames onto the view). It replaces the frames, events and what they
 * decided, then applies its messages in order as if each had arrived alone; the hello,
 * the run and the settings stay. One revision for the lot: the charts redraw once.
 */
function applyHistory(state, msg) {
  const revision = state.revision;
  state.columns = createSeries(state.capacity);
  state.tests = createSeries(state.capacity);
  state.ics = createSeries(state.capacity);
  state.latest = null;
  state.step = null;
  state.epoch = null;
  state.frames = 0;
  state.nonfiniteFrames = 0;
  state.events = [];
  state.skipped = null;
  state.diverged = {};
  for (let inner of Array.isArray(msg.messages) ? msg.messages : []) {
    // A frame inside says its own version; one that does not is the history's.
    if (inner?.type === "frame" && inner.v === undefined) inner = { ...inner, v: msg.v };
    state = applyMessage(state, inner);
  }
  state.revision = revision + 1;
  return state;
}

const SETTING_KINDS = new Set(["lr", "batch_size", "bn_momentum"]);

function applyEvent(state, msg) {
  const event = { ...msg };
  delete event.v;
  delete event.type;
  state.events.push(event);
  if (state.events.length > state.maxEvents) state.events.splice(0, state.events.length - state.maxEvents);
  if (SETTING_KINDS.has(msg.kind)) {
    state.settings = { ...state.settings, [msg.kind]: msg.value ?? null };
  } else if (msg.kind === "state" && typeof msg.state === "string") {
    state.runState = msg.state;
    state.runMessage = msg.message ?? null;
  } else if (msg.kind === "skipped") {
    state.skipped = {
      step: msg.step ?? null,
      variants: Array.isArray(msg.variants) ? msg.variants : [],
      reason: msg.reason ?? "",
    };
  } else if (msg.kind === "diverged" && typeof msg.variant === "string") {
    state.diverged = { ...state.diverged, [msg.variant]: { step: msg.step ?? null, reason: msg.reason ?? null } };
  }
  state.revision += 1;
  return state;
}

function applyAck(state, msg) {
  const run = msg.run;
  if (run && typeof run === "object") {
    state.run = run;
    if (typeof run.state === "string") state.runState = run.state;
    state.settings = {
      lr: run.lr ?? state.settings.lr,
      batch_size: run.batch_size ?? state.settings.batch_size,
      bn_momentum: "bn_momentum" in run ? run.bn_momentum : state.settings.bn_momentum,
    };
  }
  state.revision += 1;
  return state;
}

function applyRunInfo(state, msg) {
  const said = msg.run?.state;
  if (typeof said !== "string") return state;
  // The stream's word stands while the run is live; an ended (or damaged) run's state is
  // the server's, whatever a replayed file without a final event would suggest.
  if (state.runState !== null && ACTIVE_STATES.has(said)) return state;
  if (state.runState === said) return state;
  state.runState = said;
  state.revision += 1;
  return state;
}

function applyError(state, msg) {
  state.lastError = { id: msg.id ?? null, message: String(msg.message ?? "") };
  state.revision += 1;
  return state;
}

/** The columns kept, oldest first. */
export function columnsOf(state) {
  return seriesItems(state.columns);
}

// The time window every step axis shares ("recent", "change" or "all"): what is happening
// now fills the width.
export const RECENT_STEPS = 2000;

/** A run that still trains (or will): its controls apply. */
export const ACTIVE_STATES = new Set(["created", "running", "paused"]);

/** The first step the window shows (-Infinity: the whole run). */
export function windowStart(state, window) {
  const latest = state.latest?.step;
  if (window === "all" || typeof latest !== "number") return Number.NEGATIVE_INFINITY;
  if (window === "change") {
    // Since the last change a person (or a schedule) made; the whole run before any.
    const changes = state.events.filter((e) => SETTING_KINDS.has(e.kind) && typeof e.step === "number");
    return changes.length ? changes[changes.length - 1].step : Number.NEGATIVE_INFINITY;
  }
  return latest - RECENT_STEPS;
}

/** The columns inside the view's time window, oldest first. */
export function columnsIn(state, view) {
  const columns = columnsOf(state);
  const start = windowStart(state, view?.window ?? "all");
  if (start === Number.NEGATIVE_INFINITY) return columns;
  let i = 0;
  while (i < columns.length && columns[i].step < start) i += 1;
  return i === 0 ? columns : columns.slice(i);
}

/** The test-metric points inside the view's time window. */
export function testsIn(state, view) {
  const start = windowStart(state, view?.window ?? "all");
  const points = testsOf(state);
  return start === Number.NEGATIVE_INFINITY ? points : points.filter((p) => p.step >= start);
}

// Test accuracy besides eval mode, on variants with running statistics (protocol.md).
export const INFERENCE_KEYS = ["acc_train_mode", "acc_population", "acc_cumulative"];

/** A variant's test metrics: loss and acc, plus the inference variants it carries. */
function testPoint(test) {
  const point = { loss: test.loss ?? null, acc: test.acc ?? null };
  for (const key of INFERENCE_KEYS) if (key in test) point[key] = test[key] ?? null;
  return point;
}

/** The test-metric points kept, oldest first. */
export function testsOf(state) {
  return seriesItems(state.tests);
}

/** Variants with a normalizer to look inside (their taps include x̂): BN, LN, GN, RMSNorm, … */
export function normalizedVariants(state) {
  return state.variants.filter((name) => (state.hello?.variants?.[name]?.taps ?? []).includes("norm_xhat"));
}

/** Variants that normalise with batch statistics (running averages, BN momentum, batch size 1). */
export function batchStatVariants(state) {
  return state.variants.filter((name) => state.hello?.variants?.[name]?.batch_stats === true);
}

/**
 * The gradient ICS of one frame (only ICS steps carry it, every ics_every): per variant,
 * its `ics.layers` (hidden layers, then the output layer), or null when no variant has one.
 */
function icsPoint(variants) {
  let point = null;
  for (const [name, entry] of Object.entries(variants)) {
    const layers = entry?.ics?.layers;
    if (!Array.isArray(layers)) continue;
    point ??= {};
    point[name] = layers.map((layer) => ({
      grad_diff: layer?.grad_diff ?? null,
      grad_cos: layer?.grad_cos ?? null,
      grad_norm: layer?.grad_norm ?? null,
    }));
  }
  return point;
}

/** The gradient ICS points kept, oldest first. */
export function icsOf(state) {
  return seriesItems(state.ics);
}
