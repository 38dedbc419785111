/** The server's rules (GET /api/rules): bounds, defaults, choices, presets, variants. */

// Loaded once at start. The page keeps no copy of them: a bound changed on the server is
// the bound the page enforces (and the server validates every request again).

let rules = null;

/** Use these rules from now on (the page calls loadRules; tests pass a fixture). */
export function setRules(value) {
  rules = value;
}

/** Fetch the rules once; the page cannot build its forms without them. */
export async function loadRules(fetchImpl = fetch) {
  const response = await fetchImpl("/api/rules", { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`GET /api/rules answered ${response.status}`);
  setRules(await response.json());
  return rules;
}

function current() {
  if (rules === null) throw new Error("the server's rules are not loaded yet");
  return rules;
}

/** A numeric field's interval {min, minOpen, max, maxOpen, integer, nullable}, or undefined. */
export const boundOf = (field) => current().bounds[field];
/** RunConfig's defaults, as the server has them. */
export const defaultsOf = () => current().defaults;
/** The options of every choice field (dataset, variants, activation, …). */
export const choicesOf = () => current().choices;
/** The presets a run can start from: name -> {title, description, values}. */
export const presetsOf = () => current().presets;
/** The sweep presets: name -> {title, description, values, field, sweep_values, max_points, measured_s}. */
export const sweepsOf = () => current().sweeps ?? {};
/** The variant registry: name -> {label, description, color, normalizer, batch_stats, …}. */
export const variantsOf = () => current().variants;
/** Does this variant normalise with batch statistics (so batch size 1 cannot train it)? */
export const usesBatchStats = (name) => current().variants[name]?.batch_stats === true;
/** The lessons, in the order of the notes: [{id, values, watch, text, claims}] (docs/lessons.md). */
export const lessonsOf = () => current().lessons ?? [];
