/** The lesson's claim, checked live on the frames the page holds: did plain's band move more? */

import { t } from "../i18n.js";
import { columnsOf } from "../state.js";
import { bandMovementRatio } from "../series.js";
import { variantName } from "./plot.js";

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
export function claimText(state, layer, tap) {
  const pair = lessonPair(state);
  if (!pair) return t(state.hello?.config?.source === "watch" ? "claim.watched" : "claim.noPair");
  const columns = columnsOf(state).slice(-RECENT_FRAMES);
  const levels = state.hello?.percentiles ?? [1, 15, 50, 85, 99];
  const measured = bandMovementRatio(columns, pair.plain, pair.reference, layer, tap, levels);
  if (!measured || columns.length < 3) return t("claim.wait");
  const params = {
    plain: variantName(pair.plain),
    bn: variantName(pair.reference),
    steps: columns[columns.length - 1].step - columns[0].step,
    ratio: Number.isFinite(measured.ratio) ? measured.ratio.toFixed(1) : "∞",
  };
  return t(measured.ratio >= CLEAR_RATIO ? "claim.holds" : "claim.weak", params);
}

export function createClaim(element, { layer, view }) {
  return {
    name: "lesson-claim",
    element,
    update(state) {
      const text = claimText(state, layer, view.tap);
      if (element.textContent !== text) element.textContent = text;
    },
  };
}
