// The websocket wrapper: reconnects with exponential backoff and resumes the stream.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Connection, UNKNOWN_RUN_CODE, backoffDelay, runSocketUrl } from "../../frontend/js/connection.js";

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
