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
