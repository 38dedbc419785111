// The page's DOM writes: text and flags are written only when they change.
import assert from "node:assert/strict";
import { test } from "node:test";

import { setProperty, setText } from "../../frontend/js/dom.js";

/** An element holding one text node, counting every write made to either. */
function element(text) {
  const writes = [];
  const node = {
    nodeType: 3,
    get data() { return text; },
    set data(value) { writes.push(["data", value]); text = value; },
  };
  const el = {
    firstChild: node,
    lastChild: node,
    get textContent() { return text; },
    set textContent(value) { writes.push(["textContent", value]); text = value; },
  };
  return { el, writes, text: () => text };
}

test("setText changes a lone text node in place, and writes nothing for the same text", () => {
  const { el, writes, text } = element("step 10");
  setText(el, "step 10");
  assert.deepEqual(writes, []);
  setText(el, "step 20");
  assert.deepEqual(writes, [["data", "step 20"]]);
  assert.equal(text(), "step 20");
});

test("setText replaces the content of an element that holds more than one text node", () => {
  const writes = [];
  let content = "ab";
  const el = {
    firstChild: { nodeType: 1 },
    lastChild: { nodeType: 3 },
    get textContent() { return content; },
    set textContent(value) { writes.push(value); content = value; },
  };
  setText(el, "ab");
  assert.deepEqual(writes, []);
  setText(el, "c");
  assert.deepEqual(writes, ["c"]);
});

test("setText fills an empty element", () => {
  let content = "";
  const el = { firstChild: null, lastChild: null, get textContent() { return content; }, set textContent(v) { content = v; } };
  setText(el, "—");
  assert.equal(content, "—");
});

test("setProperty writes a flag only when it changes", () => {
  const writes = [];
  let hidden = true;
  const el = { get hidden() { return hidden; }, set hidden(v) { writes.push(v); hidden = v; } };
  setProperty(el, "hidden", true);
  assert.deepEqual(writes, []);
  setProperty(el, "hidden", false);
  assert.deepEqual(writes, [false]);
});
