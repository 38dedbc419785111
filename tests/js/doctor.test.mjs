// The BN doctor card's pure parts: grouping by variant and layer, titles per language, the
// card's states, and when the widget asks the server (an injected clock and request).
import assert from "node:assert/strict";
import { test } from "node:test";

import "./rules.mjs";
import { doctorView, findingTitle, groupFindings, layerMarks, createDoctor, REFRESH_MS } from "../../frontend/js/charts/doctor.js";
import { MESSAGES } from "../../frontend/js/i18n.js";

// Shaped as GET /api/runs/{id}/doctor answers (Finding.to_json), titles as the server writes them.
const finding = (variant, layer, code, severity, title, numbers = {}) => ({
  variant, layer, code, severity, title, evidence: `evidence of ${code}`, fix: `fix of ${code}`, numbers,
});
const FINDINGS = [
  finding("bn", 1, "running_mean_off", "warn", "running mean off the recent batches in 3 channels", { channels_over: 3 }),
  finding("bn", null, "train_eval_gap", "warn", "forgetting model.eval() costs 16.4 points", { gap_points: 16.4 }),
  finding("ln", 0, "dead_units", "warn", "41% of the ReLU units are dead", { dead_units: 0.4125 }),
  finding("bn", null, "skipped", "info", "skipped", { frames: 2 }),
  finding("bn", 0, "saturated", "warn", "30% of the outputs saturated", { saturated: 0.3 }),
];

test("findings group by variant in the run's order, the whole network before each layer in order", () => {
  const groups = groupFindings(FINDINGS, ["plain", "bn", "ln"]);
  assert.deepEqual(groups.map((g) => g.variant), ["plain", "bn", "ln"]);
  assert.deepEqual(groups[0].sections, [], "a variant without findings keeps its place, empty");
  const bn = groups[1].sections;
  assert.deepEqual(bn.map((s) => s.layer), [null, 0, 1]);
  assert.deepEqual(bn[0].findings.map((f) => f.code), ["train_eval_gap", "skipped"], "the server's order within a section");
  // A variant the run's list does not name (e.g. a stale list) still shows, after the others.
  assert.deepEqual(groupFindings(FINDINGS, ["ln"]).map((g) => g.variant), ["ln", "bn"]);
});

test("English shows the server's titles; Korean rebuilds each from its code and numbers", () => {
  for (const f of FINDINGS) assert.equal(findingTitle(f, "en"), f.title);
  assert.equal(findingTitle(FINDINGS[1], "ko"), "model.eval()을 빠뜨리면 정확도가 16.4점 떨어짐");
  assert.equal(findingTitle(FINDINGS[2], "ko"), "ReLU 유닛의 41%가 죽어 있음");
  assert.equal(findingTitle(FINDINGS[0], "ko"), "채널 3개에서 running mean이 최근 배치와 어긋남");
  // Train mode winning (a negative gap) is the other title, its size positive.
  const lag = finding("bn", null, "train_eval_gap", "warn", "running statistics lag the batches by 4.0 points", { gap_points: -4 });
  assert.equal(findingTitle(lag, "ko"), "running 통계가 배치 통계보다 4.0점 뒤처짐");
  // The English templates say what the server says, number for number.
  const en = (key, params) => MESSAGES.en[key].replace(/\{(\w+)\}/g, (_, name) => params[name]);
  assert.equal(en("doctor.title.forgotEval", { points: "16.4" }), FINDINGS[1].title);
  assert.equal(en("doctor.title.dead", { pct: "41" }), FINDINGS[2].title);
  // A code this page does not know, or a number missing: the server's title, never "undefined".
  assert.equal(findingTitle(finding("bn", null, "new_check", "warn", "a new check"), "ko"), "a new check");
  assert.equal(findingTitle(finding("bn", 0, "dead_units", "warn", "dead", { dead_units: null }), "ko"), "dead");
});

test("the card says checking, then no problems, an error line, or the findings", () => {
  assert.deepEqual(doctorView(null, ["bn"], "en").status, "checking");
  assert.equal(doctorView(null, ["bn"], "en").line, "checking…");
  const clear = doctorView({ ok: true, status: 200, body: { run: "r", findings: [] } }, ["bn"], "en");
  assert.equal(clear.status, "clear");
  assert.equal(clear.line, "no problems found");
  const refused = doctorView({ ok: false, status: 409, body: { detail: "run r has no data yet" } }, [], "en");
  assert.deepEqual([refused.status, refused.line], ["error", "could not check: run r has no data yet"]);
  const offline = doctorView({ ok: false, status: 0, body: null, error: "TypeError" }, [], "ko");
  assert.equal(offline.line, "진단하지 못했습니다: 서버에 연결할 수 없습니다");
  const odd = doctorView({ ok: true, status: 200, body: { oops: 1 } }, [], "en");
  assert.equal(odd.status, "error", "an answer without findings is not read as 'no problems'");

  const found = doctorView({ ok: true, status: 200, body: { run: "r", findings: FINDINGS } }, ["plain", "bn", "ln"], "en");
  assert.equal(found.status, "found");
  assert.equal(found.line, "4 warnings, 1 notes");
  assert.equal(found.note, null);
  const bn = found.groups[1];
  assert.equal(bn.name, "BN");
  assert.deepEqual(bn.sections.map((s) => s.heading), ["whole network", "Hidden layer 1", "Hidden layer 2"]);
  assert.deepEqual(bn.sections[0].items[1], { severity: "info", badge: "note", title: "skipped", evidence: "evidence of skipped", fix: "fix of skipped" });
  const ko = doctorView({ ok: true, status: 200, body: { run: "r", findings: FINDINGS } }, ["bn", "ln"], "ko");
  assert.equal(ko.note, "진단 근거와 해결책은 영어로 표시됩니다.");
  assert.equal(ko.groups[0].sections[0].items[0].title, "model.eval()을 빠뜨리면 정확도가 16.4점 떨어짐");
  assert.equal(ko.groups[0].sections[0].items[0].evidence, "evidence of train_eval_gap", "evidence stays English");
});

test("each hidden layer with a finding gets its worst severity, count and titles", () => {
  const marks = layerMarks([...FINDINGS, finding("plain", 1, "skipped", "info", "x")], "en");
  assert.deepEqual(Object.keys(marks).sort(), ["0", "1"], "whole-network findings mark no layer");
  assert.deepEqual(marks[0], { severity: "warn", count: 2, titles: ["LayerNorm: 41% of the ReLU units are dead", "BN: 30% of the outputs saturated"] });
  assert.equal(marks[1].severity, "warn");
  assert.equal(layerMarks([finding("bn", 2, "skipped", "info", "x")], "en")[2].severity, "info");
});

test("the widget asks when the run changes, every REFRESH_MS while active, once after it ends", async () => {
  let clock = 0;
  const asked = [];
  const answers = [];
  const ask = (id) => {
    asked.push(id);
    return new Promise((resolve) => answers.push(resolve));
  };
  let run = "a";
  // No DOM in node: a card whose drawing is counted, not shown.
  const drawn = [];
  const card = { body: { dataset: {}, replaceChildren: (...parts) => drawn.push(parts.length) }, stats: {} };
  globalThis.document = { createElement: () => ({ dataset: {}, append() {}, setAttribute() {} }) };
  const widget = createDoctor(card, { runKey: () => run, ask, now: () => clock });
  const state = (runState) => ({ hello: { variants: {} }, variants: ["bn"], runState });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

  widget.update({ ...state("running"), hello: null });
  assert.deepEqual(asked, [], "nothing to ask before the hello");
  widget.update(state("running"));
  widget.update(state("running"));
  assert.deepEqual(asked, ["a"], "one request at a time, not one per frame");
  answers.shift()({ ok: true, status: 200, body: { findings: [] } });
  await settle();
  clock += REFRESH_MS - 1;
  widget.update(state("running"));
  assert.deepEqual(asked, ["a"]);
  clock += 1;
  widget.update(state("running"));
  assert.deepEqual(asked, ["a", "a"], "again after REFRESH_MS");
  const drawnBefore = drawn.length;
  answers.shift()({ ok: true, status: 200, body: { findings: [] } });
  await settle();
  assert.equal(drawn.length, drawnBefore, "the same answer again is not redrawn (nor re-announced)");
  widget.update(state("finished"));
  assert.deepEqual(asked, ["a", "a", "a"], "once more when it ends");
  answers.shift()({ ok: false, status: 0, body: null });
  await settle();
  assert.equal(drawn.length, drawnBefore + 1, "an error is drawn, as a line");
  clock += 10 * REFRESH_MS;
  widget.update(state("finished"));
  assert.deepEqual(asked, ["a", "a", "a"], "an ended run is not asked again");
  run = "b";
  widget.update(state("running"));
  assert.deepEqual(asked, ["a", "a", "a", "b"], "a new run is asked at once");
  // A late answer for a run the page left is dropped.
  run = "c";
  widget.update({ ...state("running"), hello: null });
  const before = drawn.length;
  answers.shift()({ ok: true, status: 200, body: { findings: FINDINGS } });
  await settle();
  assert.equal(drawn.length, before);
  delete globalThis.document;
});
