/** The lesson's claim, live on the frames the page holds: did plain's units move further than BN's? */

// Measured on the same held-out examples every frame (drift_fixed), where the batch drawn plays no part.

import { t } from "../i18n.js";
import { columnsOf } from "../state.js";
import { unitDrift } from "../series.js";
import { variantName } from "./plot.js";
import { setText } from "../dom.js";

// The recent stretch the claim is judged on (frames, so about RECENT_FRAMES × probe_every steps).
export const RECENT_FRAMES = 40;
// Below this ratio the page says the run does not show the difference right now.
export const CLEAR_RATIO = 2;

/** Which two variants the lesson compares: plain against the first batch normalizer. */
export function lessonPair(state) {
  const reference = state.variants.find((v) => state.hello?.variants?.[v]?.batch_stats) ?? null;
  // A watched run names its models itself: its plain one is the one without a normalizer.
  const unnormalized = state.variants.find((v) => state.hello?.variants?.[v]?.normalizer === null) ?? null;
  const plain = state.variants.includes("plain") ? "plain" : unnormalized;
  return plain && reference ? { plain, reference } : null;
}

/** The sentence under the lesson's chart, from the numbers (pure but for t()). */
export function claimText(state, layer) {
  const pair = lessonPair(state);
  const watched = state.hello?.config?.source === "watch";
  if (!pair) return t(watched ? "claim.watched" : "claim.noPair");
  // A watched model has no held-out set here: its frames carry no drift_fixed.
  if (watched) return t("claim.watchedPair");
  const columns = columnsOf(state).slice(-RECENT_FRAMES);
  const measured = unitDrift(columns, pair.plain, pair.reference, layer);
  if (!measured || columns.length < 3) return t("claim.wait");
  const params = {
    plain: variantName(pair.plain),
    bn: variantName(pair.reference),
    steps: columns[columns.length - 1].step - columns[0].step,
    ratio: Number.isFinite(measured.ratio) ? measured.ratio.toFixed(1) : "∞",
  };
  return t(measured.ratio >= CLEAR_RATIO ? "claim.holds" : "claim.weak", params);
}

export function createClaim(element, { layer }) {
  return {
    name: "lesson-claim",
    element,
    update(state) {
      const text = claimText(state, layer);
      setText(element, text);
    },
  };
}
