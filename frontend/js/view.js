/** The "Show" panel: the time window, which tap the distribution charts show, which BN variant and channel. */

import { layerChannels, normalizedVariants } from "./state.js";
import { t } from "./i18n.js";
import { EVENT_COLORS } from "./charts/plot.js";

/** The most channels any hidden layer of this variant has (a CNN's or a watched model's
 * layers may differ; the BN chart clamps to each layer's own). At least 1. */
export function channelCount(state, variant) {
  let most = 0;
  for (let layer = 0; layer < Math.max(1, state.depth ?? 0); layer += 1) {
    most = Math.max(most, layerChannels(state.hello, variant, layer));
  }
  return Math.max(1, most);
}

const TAPS = ["linear_out", "norm_xhat", "norm_out", "act_input", "act_output"];

function options(select, values, key) {
  select.replaceChildren(
    ...values.map((value) => {
      const option = document.createElement("option");
      option.value = value;
      option.dataset.i18n = `${key}.${value}`;
      option.textContent = t(`${key}.${value}`);
      return option;
    }),
  );
}

/**
 * Wire the panel's inputs to `view` (the person's choices the charts read). onChange(kind)
 * says which charts to redraw now: "window" (every step axis), "tap" or "bn". Returns {fill(state)} to offer the choices
 * a run has, after its hello, and {choose({tap, window})} to make choices for the person.
 */
export function createViewPanel(view, { $, getState, onChange }) {
  $("view-window").value = view.window;
  $("view-window").addEventListener("change", (event) => {
    view.window = event.target.value;
    onChange("window");
  });
  $("view-tap").addEventListener("change", (event) => {
    view.tap = event.target.value;
    onChange("tap");
  });
  $("view-channel").addEventListener("input", (event) => {
    const width = channelCount(getState(), view.bnVariant);
    const value = Number(event.target.value);
    const ok = Number.isInteger(value) && value >= 1 && value <= width;
    // Refused in place, with the range: the charts keep the last valid channel.
    event.target.toggleAttribute("aria-invalid", !ok);
    event.target.classList.toggle("invalid", !ok);
    $("view-channel-msg").textContent = ok ? "" : t("view.channelRange", { width });
    if (!ok) return;
    view.channel = value - 1;
    onChange("bn");
  });
  $("view-bn-variant").addEventListener("change", (event) => {
    view.bnVariant = event.target.value;
    onChange("bn");
  });
  $("view-notes").addEventListener("change", (event) => document.body.classList.toggle("hide-notes", !event.target.checked));

  // What the dashed lines on every time axis mean: one colour per kind of change.
  const key = $("markers-key");
  const heading = document.createElement("p");
  heading.className = "small muted";
  heading.dataset.i18n = "markers.title";
  heading.textContent = t("markers.title");
  const items = Object.entries(EVENT_COLORS).map(([kind, color]) => {
    const item = document.createElement("span");
    item.className = "marker-item";
    item.dataset.kind = kind;
    const swatch = document.createElement("span");
    swatch.className = "marker-swatch";
    swatch.style.borderColor = color;
    const label = document.createElement("span");
    label.dataset.i18n = `markers.${kind}`;
    label.textContent = t(`markers.${kind}`);
    item.append(swatch, label);
    return item;
  });
  key.replaceChildren(heading, ...items);

  /** Offer the taps, BN variants and channels this run has; keep choices that still apply. */
  function fill(state) {
    const normalized = normalizedVariants(state);
    if (!normalized.includes(view.bnVariant)) view.bnVariant = normalized.includes("bn") ? "bn" : (normalized[0] ?? null);
    const width = channelCount(state, view.bnVariant);
    view.channel = Math.min(view.channel, width - 1);

    const available = TAPS.filter((tap) => state.variants.some((v) => (state.hello?.variants?.[v]?.taps ?? []).includes(tap)));
    options($("view-tap"), available, "tap");
    if (!available.includes(view.tap)) view.tap = "act_input";
    $("view-tap").value = view.tap;

    $("view-bn").hidden = normalized.length === 0;
    $("view-channel").max = String(width);
    $("view-channel").value = String(view.channel + 1);
    options($("view-bn-variant"), normalized, "variant");
    $("view-bn-variant").value = view.bnVariant ?? "";
    $("view-bn-variant-box").hidden = normalized.length < 2;
  }

  /**
   * Make choices for the person (a lesson asks for its tap and the whole run): {tap, window},
   * each optional. A tap this run does not offer yet is chosen at the next fill.
   */
  function choose({ tap, window } = {}) {
    if (window) {
      view.window = window;
      $("view-window").value = window;
    }
    if (tap) {
      view.tap = tap;
      if ([...$("view-tap").options].some((option) => option.value === tap)) $("view-tap").value = tap;
    }
    onChange(window ? "window" : "tap"); // "window" redraws every chart, the tap's included
  }

  return { fill, choose };
}
