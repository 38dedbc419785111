/** One run's websocket: connect, reconnect with exponential backoff, send control messages. */

// The server closes with this code when it has no run with the id asked for (e.g. a demo
// run from before a restart); reconnecting would not help, so the page picks another run.
export const UNKNOWN_RUN_CODE = 4404;

export const DEFAULT_BACKOFF = { initialMs: 250, factor: 2, maxMs: 5000 };

/** Delay before reconnect attempt `attempt` (0-based): initial × factor^attempt, capped. */
export function backoffDelay(attempt, { initialMs, factor, maxMs } = DEFAULT_BACKOFF) {
  return Math.min(maxMs, initialMs * factor ** Math.max(0, attempt));
}

/**
 * The websocket URL of a run, on the page's own host (ws: or wss: to match http: or https:).
 * With a view ({tap, channel}) the server streams frames projected onto it.
 */
export function runSocketUrl(location, runId, view = null) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = view ? `?${new URLSearchParams({ tap: view.tap, channel: String(view.channel) })}` : "";
  return `${scheme}//${location.host}/ws/runs/${encodeURIComponent(runId)}${query}`;
}

/** What the server projects the stream onto: the view's tap and BN channel (0-based). */
export function streamView(view) {
  return { tap: view.tap, channel: view.channel };
}

const sameView = (a, b) => a !== null && b !== null && a.tap === b.tap && a.channel === b.channel;

/** A binary message's text: gzip-compressed UTF-8 (an ArrayBuffer, a typed array or a Blob). */
export function gunzipText(data) {
  const blob = data instanceof Blob ? data : new Blob([data]);
  return new Response(blob.stream().pipeThrough(new DecompressionStream("gzip"))).text();
}

/**
 * A websocket that keeps itself connected. Each (re)connect makes the server send the
 * run's hello and history again, so the page's state rebuilds itself from the stream.
 *
 * onMessage(text) gets every message's text, in the order the messages arrived: a binary
 * message is gzip-compressed text, and the text messages after it wait for it to
 * decompress. onStatus({state, attempt, delayMs, code}) reports "connecting", "open",
 * "waiting" (before a retry), "unknown-run" and "closed".
 *
 * `url` is a string, or a function of the view that gives the URL at each connect; `view`
 * (optional) returns the page's current view, so a reconnect asks for the view as it is
 * then, and syncView() tells an open socket when it changed.
 */
export class Connection {
  constructor({ url, view = null, onMessage, onStatus = () => {}, WebSocketImpl = globalThis.WebSocket, timers = globalThis, backoff = DEFAULT_BACKOFF }) {
    this.url = url;
    this.view = view;
    this.projected = null; // the view the server streams now: the URL's, then the last one sent
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

  /**
   * Ask the server to stream the page's current view when it differs from the one it
   * streams (it answers with a new history); true when asked. Closed: nothing to send, the
   * next connect puts the current view in its URL.
   */
  syncView() {
    if (!this.view) return false;
    const wanted = streamView(this.view());
    if (sameView(wanted, this.projected)) return false;
    if (!this.send({ type: "view", ...wanted })) return false;
    this.projected = wanted;
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
    this.projected = this.view ? streamView(this.view()) : null;
    let socket;
    try {
      socket = new this.WebSocketImpl(typeof this.url === "function" ? this.url(this.projected) : this.url);
    } catch {
      this._retry(undefined);
      return;
    }
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this._setState("open");
      this.syncView(); // the view changed while connecting
    };
    const receive = this._inOrder(socket);
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      // A message proves the server serves this run: the next outage starts a fresh backoff.
      this.attempt = 0;
      receive(event.data);
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

  /**
   * One socket's delivery: messages reach onMessage in arrival order. Decompression is
   * asynchronous, so while a binary message is being read, later ones queue behind it;
   * with nothing queued a text message goes straight through.
   */
  _inOrder(socket) {
    let queued = 0;
    let tail = Promise.resolve();
    return (data) => {
      if (typeof data === "string" && queued === 0) {
        this.onMessage(data);
        return;
      }
      queued += 1;
      // Decompression starts now; only the delivery waits its turn. A message that does not
      // decompress is nothing a reader could use.
      const text = typeof data === "string" ? Promise.resolve(data) : gunzipText(data).catch(() => null);
      tail = tail
        .then(() => text)
        .then((body) => {
          if (body !== null && this.socket === socket) this.onMessage(body);
        })
        .catch((error) => console.error(error)) // the reader's failure must not stall the queue
        .finally(() => {
          queued -= 1;
        });
    };
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
