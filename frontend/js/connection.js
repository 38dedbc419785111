/** One run's websocket: connect, reconnect with exponential backoff, send control messages. */

// The server closes with this code when it has no run with the id asked for (e.g. a demo
// run from before a restart); reconnecting would not help, so the page picks another run.
export const UNKNOWN_RUN_CODE = 4404;

export const DEFAULT_BACKOFF = { initialMs: 250, factor: 2, maxMs: 5000 };

/** Delay before reconnect attempt `attempt` (0-based): initial × factor^attempt, capped. */
export function backoffDelay(attempt, { initialMs, factor, maxMs } = DEFAULT_BACKOFF) {
  return Math.min(maxMs, initialMs * factor ** Math.max(0, attempt));
}

/** The websocket URL of a run, on the page's own host (ws: or wss: to match http: or https:). */
export function runSocketUrl(location, runId) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/runs/${encodeURIComponent(runId)}`;
}

/**
 * A websocket that keeps itself connected. Each (re)connect makes the server send the
 * run's hello and history again, so the page's state rebuilds itself from the stream.
 *
 * onMessage(text) gets every message's text; onStatus({state, attempt, delayMs, code})
 * reports "connecting", "open", "waiting" (before a retry), "unknown-run" and "closed".
 */
export class Connection {
  constructor({ url, onMessage, onStatus = () => {}, WebSocketImpl = globalThis.WebSocket, timers = globalThis, backoff = DEFAULT_BACKOFF }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.WebSocketImpl = WebSocketImpl;
    this.timers = timers;
    this.backoff = backoff;
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.state = "idle";
    this.closedByUs = false;
  }

  open() {
    this.closedByUs = false;
    this._connect();
    return this;
  }

  /** Send a JSON message; false when the socket is not open (the caller falls back to HTTP). */
  send(message) {
    if (!this.socket || this.state !== "open") return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  close() {
    this.closedByUs = true;
    if (this.retryTimer !== null) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "page left the run");
    this._setState("closed");
  }

  _connect() {
    this.retryTimer = null;
    this._setState("connecting");
    let socket;
    try {
      socket = new this.WebSocketImpl(this.url);
    } catch {
      this._retry(undefined);
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this._setState("open");
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      // A message proves the server serves this run: the next outage starts a fresh backoff.
      this.attempt = 0;
      this.onMessage(event.data);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closedByUs) return;
      if (event.code === UNKNOWN_RUN_CODE) {
        this._setState("unknown-run", { code: event.code });
        return;
      }
      this._retry(event.code);
    };
    // An error is always followed by close, which decides what happens next.
    socket.onerror = () => {};
  }

  _retry(code) {
    const delayMs = backoffDelay(this.attempt, this.backoff);
    this.attempt += 1;
    this._setState("waiting", { delayMs, code });
    this.retryTimer = this.timers.setTimeout(() => this._connect(), delayMs);
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.onStatus({ state, attempt: this.attempt, ...extra });
  }
}
