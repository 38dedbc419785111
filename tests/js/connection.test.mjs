// The websocket wrapper: reconnects with exponential backoff and resumes the stream.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gzipSync } from "node:zlib";

import { Connection, UNKNOWN_RUN_CODE, backoffDelay, runSocketUrl, streamView } from "../../frontend/js/connection.js";

class FakeSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    FakeSocket.made.push(this);
  }
  send(text) {
    this.sent.push(text);
  }
  close(code, reason) {
    this.closed = { code, reason };
  }
  // test helpers: what the browser would do
  serverOpens() {
    this.onopen?.({});
  }
  serverSends(text) {
    this.onmessage?.({ data: text });
  }
  serverCloses(code = 1006) {
    this.onclose?.({ code });
  }
}

function fakeTimers() {
  const pending = [];
  return {
    pending,
    setTimeout(fn, ms) {
      pending.push({ fn, ms });
      return pending.length;
    },
    clearTimeout(id) {
      if (pending[id - 1]) pending[id - 1].fn = () => {};
    },
    fire() {
      const next = pending.shift();
      next.fn();
      return next.ms;
    },
  };
}

function setup() {
  FakeSocket.made = [];
  const timers = fakeTimers();
  const received = [];
  const statuses = [];
  const connection = new Connection({
    url: "ws://host/ws/runs/abc",
    onMessage: (text) => received.push(text),
    onStatus: (status) => statuses.push(status),
    WebSocketImpl: FakeSocket,
    timers,
  });
  return { connection, timers, received, statuses };
}

test("backoff doubles from 250 ms and stops growing at 5 s", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 10].map((a) => backoffDelay(a)), [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
  assert.equal(backoffDelay(3, { initialMs: 100, factor: 3, maxMs: 10_000 }), 2700);
});

test("the socket URL follows the page's scheme and host", () => {
  assert.equal(runSocketUrl({ protocol: "http:", host: "127.0.0.1:8000" }, "a b"), "ws://127.0.0.1:8000/ws/runs/a%20b");
  assert.equal(runSocketUrl({ protocol: "https:", host: "x.org" }, "id"), "wss://x.org/ws/runs/id");
});

test("messages pass through; control messages go out as JSON only while open", () => {
  const { connection, received, statuses } = setup();
  connection.open();
  const socket = FakeSocket.made[0];
  assert.equal(connection.send({ type: "control", id: 1, lr: 0.1 }), false);
  socket.serverOpens();
  socket.serverSends('{"v":1,"type":"hello"}');
  assert.deepEqual(received, ['{"v":1,"type":"hello"}']);
  assert.equal(connection.send({ type: "control", id: 1, lr: 0.1 }), true);
  assert.deepEqual(JSON.parse(socket.sent[0]), { type: "control", id: 1, lr: 0.1 });
  assert.deepEqual(statuses.map((s) => s.state), ["connecting", "open"]);
});

test("a dropped connection retries with growing delays, then resumes on a new socket", () => {
  const { connection, timers, statuses } = setup();
  connection.open();
  FakeSocket.made[0].serverCloses(1006); // server went away
  assert.equal(statuses.at(-1).state, "waiting");
  assert.equal(timers.fire(), 250);
  FakeSocket.made[1].serverCloses(1006); // still down: refused
  assert.equal(timers.fire(), 500);
  FakeSocket.made[2].serverCloses(1006);
  assert.equal(timers.fire(), 1000);
  const socket = FakeSocket.made[3];
  socket.serverOpens();
  socket.serverSends('{"v":1,"type":"hello"}'); // the server replays hello + history
  assert.equal(connection.state, "open");
  // A message arrived, so the next outage starts again from the shortest delay.
  socket.serverCloses(1012);
  assert.equal(timers.fire(), 250);
  assert.equal(FakeSocket.made.length, 5);
});

test("an unknown run stops retrying and says so", () => {
  const { connection, timers, statuses } = setup();
  connection.open();
  FakeSocket.made[0].serverCloses(UNKNOWN_RUN_CODE);
  assert.equal(statuses.at(-1).state, "unknown-run");
  assert.equal(timers.pending.length, 0);
  assert.equal(connection.state, "unknown-run");
});

test("closing from the page cancels a pending retry and ignores the old socket", () => {
  const { connection, timers, received } = setup();
  connection.open();
  const socket = FakeSocket.made[0];
  socket.serverCloses(1006);
  connection.close();
  timers.pending.forEach((p) => p.fn());
  assert.equal(FakeSocket.made.length, 1);
  socket.serverSends("late");
  assert.deepEqual(received, []);
  assert.equal(connection.state, "closed");
});

test("a constructor that throws (bad URL, blocked) counts as a failed attempt", () => {
  const timers = fakeTimers();
  const statuses = [];
  class Broken {
    constructor() {
      throw new Error("blocked");
    }
  }
  new Connection({ url: "ws://x", onMessage() {}, onStatus: (s) => statuses.push(s), WebSocketImpl: Broken, timers }).open();
  assert.equal(statuses.at(-1).state, "waiting");
  assert.equal(timers.pending[0].ms, 250);
});

// ---- wire protocol v2: the one-message join and the view the server projects onto ----

/** What a server sends as one binary message: gzip-compressed UTF-8 JSON, as an ArrayBuffer. */
function gzipped(message) {
  const bytes = gzipSync(Buffer.from(JSON.stringify(message), "utf8"));
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

/** Wait (on real timers) until `done()` holds; decompression is asynchronous. */
async function until(done) {
  for (let i = 0; i < 200 && !done(); i += 1) await new Promise((resolve) => setTimeout(resolve, 2));
  assert.ok(done(), "timed out");
}

test("a gzip binary history decodes, and text sent after it is delivered after it", async () => {
  const { connection, received } = setup();
  connection.open();
  const socket = FakeSocket.made[0];
  assert.equal(socket.binaryType, "arraybuffer");
  socket.serverOpens();
  socket.serverSends('{"v":2,"type":"hello"}');
  const history = { v: 2, type: "history", messages: [{ type: "frame", step: 0, note: "ü → γ" }] };
  socket.serverSends(gzipped(history));
  socket.serverSends('{"type":"frame","step":1}');
  socket.serverSends('{"type":"event","step":1}');
  assert.deepEqual(received, ['{"v":2,"type":"hello"}'], "later text waits for the binary message");
  await until(() => received.length === 4);
  assert.deepEqual(JSON.parse(received[1]), history, "UTF-8 survives");
  assert.deepEqual(received.slice(2), ['{"type":"frame","step":1}', '{"type":"event","step":1}']);
  // The queue drained: text goes straight through again.
  socket.serverSends("now");
  assert.equal(received.at(-1), "now");
});

test("two binary messages keep their order; one that does not decompress is skipped", async () => {
  const { connection, received } = setup();
  connection.open();
  const socket = FakeSocket.made[0];
  socket.serverOpens();
  const big = { type: "history", messages: Array.from({ length: 2000 }, (_, step) => ({ type: "frame", step })) };
  socket.serverSends(gzipped(big)); // larger: slower to decompress than the next one
  socket.serverSends(new Uint8Array([1, 2, 3]).buffer); // not gzip
  socket.serverSends(gzipped({ type: "history", messages: [] }));
  socket.serverSends("last");
  await until(() => received.length === 3);
  assert.deepEqual(received.map((text) => (text.startsWith("{") ? JSON.parse(text).messages.length : text)), [2000, 0, "last"]);
});

test("a binary message still decoding when the socket is replaced is dropped", async () => {
  const { connection, timers, received } = setup();
  connection.open();
  const first = FakeSocket.made[0];
  first.serverOpens();
  first.serverSends(gzipped({ type: "history", messages: [] }));
  first.serverCloses(1006);
  timers.fire();
  const second = FakeSocket.made[1];
  second.serverOpens();
  second.serverSends("fresh"); // the new socket's queue is its own: no wait behind the old one
  assert.deepEqual(received, ["fresh"]);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(received, ["fresh"]);
});

test("the socket URL carries the view; each reconnect uses the view as it is then", () => {
  assert.equal(
    runSocketUrl({ protocol: "http:", host: "h:1" }, "r", { tap: "act_input", channel: 0 }),
    "ws://h:1/ws/runs/r?tap=act_input&channel=0",
  );
  assert.deepEqual(streamView({ window: "all", tap: "norm_out", channel: 3, bnVariant: "bn" }), { tap: "norm_out", channel: 3 });
  FakeSocket.made = [];
  const timers = fakeTimers();
  const view = { window: "recent", tap: "act_input", channel: 0, bnVariant: "bn" };
  const connection = new Connection({
    url: (projection) => runSocketUrl({ protocol: "https:", host: "x" }, "r", projection),
    view: () => view,
    onMessage() {},
    WebSocketImpl: FakeSocket,
    timers,
  }).open();
  assert.equal(FakeSocket.made[0].url, "wss://x/ws/runs/r?tap=act_input&channel=0");
  view.tap = "linear_out"; // changed while the socket is down: nothing to send
  view.channel = 2;
  assert.equal(connection.syncView(), false);
  FakeSocket.made[0].serverCloses(1006);
  timers.fire();
  assert.equal(FakeSocket.made[1].url, "wss://x/ws/runs/r?tap=linear_out&channel=2");
  FakeSocket.made[1].serverOpens();
  assert.deepEqual(FakeSocket.made[1].sent, [], "the URL already asked for this view");
});

test("a view change sends one view message while open; the BN variant or window sends none", () => {
  FakeSocket.made = [];
  const view = { window: "recent", tap: "act_input", channel: 0, bnVariant: "bn" };
  const connection = new Connection({ url: () => "ws://x", view: () => view, onMessage() {}, WebSocketImpl: FakeSocket, timers: fakeTimers() }).open();
  const socket = FakeSocket.made[0];
  view.tap = "norm_xhat"; // chosen while connecting: asked for as soon as the socket opens
  assert.equal(connection.syncView(), false);
  socket.serverOpens();
  assert.deepEqual(socket.sent.map((text) => JSON.parse(text)), [{ type: "view", tap: "norm_xhat", channel: 0 }]);
  view.bnVariant = "ln";
  view.window = "all";
  assert.equal(connection.syncView(), false);
  view.channel = 4;
  assert.equal(connection.syncView(), true);
  assert.equal(connection.syncView(), false, "asked once");
  assert.deepEqual(JSON.parse(socket.sent.at(-1)), { type: "view", tap: "norm_xhat", channel: 4 });
  assert.equal(socket.sent.length, 2);
  // Without a view getter (a plain URL) there is no projection to keep in step.
  const { connection: plain } = setup();
  plain.open();
  FakeSocket.made.at(-1).serverOpens();
  assert.equal(plain.syncView(), false);
  assert.deepEqual(FakeSocket.made.at(-1).sent, []);
});
