// Every page module loads without a browser (only main.js touches the DOM as it loads).
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const root = new URL("../../frontend/js/", import.meta.url);

function modules(dir, prefix = "") {
  return readdirSync(new URL(prefix, root), { withFileTypes: true }).flatMap((entry) => {
    const path = join(prefix, entry.name);
    if (entry.isDirectory()) return modules(dir, `${path}/`);
    return entry.name.endsWith(".js") ? [path] : [];
  });
}

test("each module loads and exports something", async () => {
  const names = modules(root).filter((name) => name !== "main.js");
  assert.ok(names.length >= 15, `found ${names}`);
  for (const name of names) {
    const exported = await import(new URL(name, root));
    assert.ok(Object.keys(exported).length > 0, `${name} exports nothing`);
  }
});

test("every module starts with a one-line comment saying its job", async () => {
  const { readFileSync } = await import("node:fs");
  for (const name of [...modules(root), "main.js"]) {
    const first = readFileSync(new URL(name, root), "utf8").split("\n")[0];
    assert.match(first, /^\/\*\* .+/, `${name}: ${first}`);
  }
});

/** The modules a module imports, as paths under frontend/js/ (static `import … from "./…"`). */
async function importsOf(name) {
  const { readFileSync } = await import("node:fs");
  const source = readFileSync(new URL(name, root), "utf8");
  const found = [...source.matchAll(/^import\b[^;]*?\bfrom\s+"(\.{1,2}\/[^"]+)"/gms)].map((m) => m[1]);
  return found.map((spec) => new URL(spec, new URL(name, root)).href.slice(root.href.length));
}

test("index.html preloads every module main.js imports, and nothing else", async () => {
  // Without the list the browser finds imports level by level, a round trip each; a module
  // left off it still loads, only later, so nothing else would notice.
  const { readFileSync } = await import("node:fs");
  const reached = new Set();
  const queue = ["main.js"];
  while (queue.length) {
    const name = queue.shift();
    if (reached.has(name)) continue;
    reached.add(name);
    queue.push(...(await importsOf(name)));
  }
  reached.delete("main.js");
  const html = readFileSync(new URL("../index.html", root), "utf8");
  const preloaded = [...html.matchAll(/<link rel="modulepreload" href="js\/([^"]+)">/g)].map((m) => m[1]);
  assert.equal(new Set(preloaded).size, preloaded.length, "a module preloaded twice");
  assert.deepEqual([...preloaded].sort(), [...reached].sort());
  assert.ok(reached.size >= 30, `found ${[...reached]}`);
});
