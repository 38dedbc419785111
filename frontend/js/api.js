/** HTTP calls to the server's run API, and reading its error answers into per-field messages. */

async function request(method, path, body) {
  const init = { method, headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    return { ok: false, status: 0, body: null, error: String(error) };
  }
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  return { ok: response.ok, status: response.status, body: parsed };
}

export const listRuns = () => request("GET", "/api/runs");
export const getRun = (id) => request("GET", `/api/runs/${encodeURIComponent(id)}`);
export const createRun = (config) => request("POST", "/api/runs", config);
export const changeRun = (id, changes) => request("PATCH", `/api/runs/${encodeURIComponent(id)}`, changes);
export const stopRun = (id) => request("DELETE", `/api/runs/${encodeURIComponent(id)}`);
/** The BN doctor's findings about a run: {run, findings} (docs/doctor.md). */
export const getDoctor = (id) => request("GET", `/api/runs/${encodeURIComponent(id)}/doctor`);

export function exportUrl(id, format) {
  return `/api/runs/${encodeURIComponent(id)}/export?format=${encodeURIComponent(format)}`;
}

/** The run's self-contained HTML report (GET /api/runs/{id}/report), live or finished, in
 * the page's language when given. */
export function reportUrl(id, lang = null) {
  const base = `/api/runs/${encodeURIComponent(id)}/report`;
  return lang ? `${base}?lang=${encodeURIComponent(lang)}` : base;
}

/**
 * An error answer as {field: message} plus `general` for what names no field. The server
 * answers either FastAPI's list ({detail: [{loc: ["body", "lr"], msg}]}) or one string
 * whose problems are "; "-separated and each start with "field: ".
 */
export function fieldErrors(body, knownFields = []) {
  const out = { general: [] };
  const detail = body?.detail;
  const add = (field, message) => {
    if (field && (knownFields.length === 0 || knownFields.includes(field))) (out[field] ??= []).push(message);
    else out.general.push(field ? `${field}: ${message}` : message);
  };
  if (Array.isArray(detail)) {
    for (const item of detail) {
      const loc = Array.isArray(item?.loc) ? item.loc.filter((part) => part !== "body") : [];
      add(loc.length ? String(loc[0]) : null, String(item?.msg ?? item));
    }
  } else if (typeof detail === "string") {
    for (const part of detail.split(/;\s+/)) {
      const match = /^([A-Za-z_][\w.]*):\s*(.*)$/s.exec(part);
      if (match) add(match[1].split(".")[0], match[2]);
      else add(null, part);
    }
  } else if (body) {
    add(null, JSON.stringify(body));
  }
  return out;
}
