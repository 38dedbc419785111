// Messages shaped like docs/protocol.md (and like `covshift run` writes them), small enough to read.

export const PERCENTILES = [1, 15, 50, 85, 99];

const edges4 = [-2, -1, 0, 1, 2];

export function hello({ variants = ["plain", "bn"], depth = 2, lr = 0.5, batchSize = 60, bnMomentum = 0.1 } = {}) {
  const layout = {
    plain: { label: "no normalization", batch_stats: false, taps: ["linear_out", "act_input", "act_output"] },
    bn: { label: "BatchNorm before the activation", batch_stats: true, taps: ["linear_out", "norm_xhat", "norm_out", "act_input", "act_output"] },
    bn_after: { label: "BatchNorm after the activation", batch_stats: true, taps: ["linear_out", "norm_xhat", "norm_out", "act_input", "act_output"] },
  };
  return {
    v: 1,
    type: "hello",
    config: { dataset: "moons", variants, depth, width: 2, activation: "sigmoid", lr, batch_size: batchSize, bn_momentum: bnMomentum, bins: 4, seed: 0 },
    dataset: { name: "moons", n_train: 1600, n_test: 400, n_features: 2, n_classes: 2 },
    variants: Object.fromEntries(variants.map((v) => [v, layout[v]])),
    percentiles: PERCENTILES,
    edges: Array.from({ length: depth }, () => ({ linear_out: edges4, act_input: edges4, act_output: [0, 0.25, 0.5, 0.75, 1], norm_xhat: edges4, norm_out: edges4 })),
  };
}

function tap(shift = 0) {
  return {
    counts: [10, 40, 40, 10],
    underflow: 0,
    overflow: 0,
    nonfinite: 0,
    percentiles: [-1.5 + shift, -0.5 + shift, shift, 0.5 + shift, 1.5 + shift],
    mean: shift,
    std: 0.8,
    min: -1.9 + shift,
    max: 1.9 + shift,
  };
}

function layer(step, { bn = false } = {}) {
  return {
    taps: { linear_out: tap(step / 100), act_input: tap(step / 100), act_output: tap(0.5) },
    saturated: 0.1,
    drift: step === 0 ? null : { w1: 0.01 * step, dmean: 0.001, dstd: 0.002 },
    bn: bn
      ? {
          batch_mean: [0.1 * step, -0.1],
          batch_var: [1 + step, 2],
          running_mean: [0.01 * step, 0],
          running_var: [1, 1],
          gamma: [1 + step / 1000, 1],
          beta: [step / 1000, 0],
        }
      : null,
    grad_norm: 0.02,
  };
}

export function frame(step, { variants = ["plain", "bn"], depth = 2, test = false, ics = false, lr = 0.5, batchSize = 60 } = {}) {
  const entries = {};
  for (const v of variants) {
    entries[v] = {
      status: "training",
      loss: 0.7 - step / 10000,
      acc: 0.5 + step / 10000,
      layers: Array.from({ length: depth }, () => layer(step, { bn: v !== "plain" })),
    };
    if (test) entries[v].test = { loss: 0.69, acc: 0.55 };
    // depth + 1 entries: the hidden layers, then the output layer; the first layer's G′ = G
    if (ics) {
      entries[v].ics = {
        layers: Array.from({ length: depth + 1 }, (_, i) => ({
          grad_diff: i === 0 ? 0 : (v === "plain" ? 0.1 : 0.02) * i,
          grad_cos: i === 0 ? 1 : 0.9,
          grad_norm: 0.2,
        })),
        landscape: { step_sizes: [0.25, 0.5], loss: [0.5, 0.4], loss_range: 0.1, grad_predictiveness: 0.2, beta_smoothness: 1.5 },
      };
    }
  }
  return { v: 1, type: "frame", step, epoch: step / 26.7, lr, batch_size: batchSize, variants: entries };
}

export function event(step, kind, fields = {}) {
  return { v: 1, type: "event", step, kind, ...fields };
}
