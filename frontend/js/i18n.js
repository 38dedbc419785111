/** All UI text in English and Korean; the chosen language is remembered in localStorage. */

import { MESSAGES } from "./messages.js";

export { MESSAGES };
export const LANGS = ["en", "ko"];
const STORAGE_KEY = "covshift.lang";

let current = initialLang();
const listeners = new Set();

function storage() {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null; // storage disabled (privacy settings, sandboxed frames)
  }
}

function initialLang() {
  const saved = storage()?.getItem(STORAGE_KEY);
  if (LANGS.includes(saved)) return saved;
  const browser = typeof navigator === "undefined" ? "" : String(navigator.language || "");
  return browser.toLowerCase().startsWith("ko") ? "ko" : "en";
}

export function getLang() {
  return current;
}

/** Switch language, remember it, and tell every listener (they re-render their text). */
export function setLang(lang) {
  if (!LANGS.includes(lang) || lang === current) return;
  current = lang;
  try {
    storage()?.setItem(STORAGE_KEY, lang);
  } catch {
    // quota or privacy mode: the choice lasts for this page only
  }
  for (const listener of listeners) listener(lang);
}

export function onLangChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The message `key` in the current language with {name} placeholders filled in. */
export function t(key, params = {}, lang = current) {
  const text = MESSAGES[lang]?.[key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

/** Fill every element marked data-i18n (text, with JSON data-i18n-params), -title, -placeholder, -aria-label. */
export function translatePage(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n, el.dataset.i18nParams ? JSON.parse(el.dataset.i18nParams) : {});
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  if (root.documentElement) root.documentElement.lang = current;
}
