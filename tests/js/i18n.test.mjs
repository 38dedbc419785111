// UI text: English and Korean complete and consistent; the choice is remembered.
import assert from "node:assert/strict";
import { test } from "node:test";

const store = new Map([["covshift.lang", "ko"]]);
globalThis.localStorage = {
  getItem: (key) => store.get(key) ?? null,
  setItem: (key, value) => store.set(key, String(value)),
};
const { MESSAGES, LANGS, getLang, onLangChange, setLang, t } = await import("../../frontend/js/i18n.js");

const placeholders = (text) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test("every message exists in both languages with the same placeholders", () => {
  assert.deepEqual(LANGS, ["en", "ko"]);
  const en = Object.keys(MESSAGES.en).sort();
  const ko = Object.keys(MESSAGES.ko).sort();
  assert.deepEqual(ko, en);
  for (const key of en) {
    assert.ok(MESSAGES.ko[key].trim(), `empty Korean text for ${key}`);
    assert.deepEqual(placeholders(MESSAGES.ko[key]), placeholders(MESSAGES.en[key]), key);
  }
});

test("every chart has a what-to-look-for note in both languages", () => {
  for (const chart of ["loss", "drift", "ics", "dist", "heatmap", "bands", "bn"]) {
    assert.ok(MESSAGES.en[`note.${chart}`]?.length > 80, chart);
    assert.ok(MESSAGES.ko[`note.${chart}`]?.length > 40, chart);
  }
});

test("the remembered language is used, and a switch is remembered and announced", () => {
  assert.equal(getLang(), "ko");
  const heard = [];
  const stop = onLangChange((lang) => heard.push(lang));
  setLang("en");
  setLang("en"); // no change, no announcement
  setLang("fr"); // not offered
  assert.deepEqual(heard, ["en"]);
  assert.equal(store.get("covshift.lang"), "en");
  stop();
  setLang("ko");
  assert.deepEqual(heard, ["en"]);
});

test("t fills placeholders, falls back to English, then to the key", () => {
  assert.equal(t("layer.title", { n: 2 }, "en"), "Hidden layer 2");
  assert.equal(t("layer.title", { n: 2 }, "ko"), "은닉층 2");
  assert.equal(t("err.gt", { min: 0 }, "en"), "must be greater than 0 (allowed {bounds})");
  assert.equal(t("no.such.key"), "no.such.key");
});
