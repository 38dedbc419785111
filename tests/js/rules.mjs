// The server's rules (GET /api/rules) as the page receives them. rules.json is written from
// covshift.web.rules by tests/test_rules.py, which fails when it no longer matches the server.
import { readFileSync } from "node:fs";

import { setRules } from "../../frontend/js/rules.js";

export const RULES = JSON.parse(readFileSync(new URL("./rules.json", import.meta.url), "utf8"));
setRules(RULES);
