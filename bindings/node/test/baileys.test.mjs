// heirline/baileys: the mapping with Baileys' real DisconnectReason values and event shapes,
// and the gateway end to end against the real engine with fake Baileys sockets.
import assert from "node:assert/strict";
import {
  ACTIVITY_PER_SECOND,
  activityEvent,
  attachBaileys,
  baileysMessageId,
  boom,
  connectionUpdateToEvents,
  identityOf,
  isInboundMessage,
  messagesUpsertToEvents,
  rateLimit,
  replyCapturedEvent,
  sendAckEvent,
  sendErrorToEvent,
  socketFields,
  statusOf,
} from "heirline/baileys";
import { HeirlineEngine } from "heirline";
import { COMMAND, test } from "./support/helpers.mjs";
import { FakeBaileysSocket, fakeBoom, inbound, until } from "./support/baileys.mjs";

// Copied from Baileys' `enum DisconnectReason` (WhiskeySockets/Baileys, src/Types/index.ts;
// checked against the baileys 6.17.16 package's lib/Types/index.d.ts); hard-coded so the
// tests need no download of the `baileys` package.
const DisconnectReason = Object.freeze({
  connectionClosed: 428,
  connectionLost: 408,
  connectionReplaced: 440,
  timedOut: 408,
  loggedOut: 401,
  badSession: 500,
  restartRequired: 515,
  multideviceMismatch: 411,
  forbidden: 403,
  unavailableService: 503,
});

/** A close as Baileys emits it: `lastDisconnect.error` is a Boom with `output.statusCode`. */
const closed = (statusCode) => ({
  connection: "close",
  lastDisconnect: { error: Object.assign(new Error("closed"), { output: { statusCode } }), date: new Date() },
});

const me = { id: "4915123456789:3@s.whatsapp.net", lid: "123456789012345:3@lid", name: "bot" };

test("status codes come from lastDisconnect.error.output.statusCode", () => {
  for (const code of Object.values(DisconnectReason)) assert.equal(statusOf(closed(code)), code);
  assert.equal(statusOf({ connection: "close" }), null);
  assert.equal(statusOf({ connection: "close", lastDisconnect: { error: new Error("x") } }), null);
});

test("connection.update maps to socket_opened / socket_closed, naming the socket's attempt", () => {
  const ctx = { account: "acct", generation: 2, attempt: 5, me };
  assert.deepEqual(connectionUpdateToEvents({ connection: "open" }, ctx), [
    { type: "socket_opened", account: "acct", generation: 2, attempt: 5, pn: me.id, lid: me.lid },
  ]);
  assert.deepEqual(connectionUpdateToEvents(closed(DisconnectReason.connectionLost), ctx), [
    { type: "socket_closed", account: "acct", generation: 2, attempt: 5, status: 408 },
  ]);
  assert.deepEqual(connectionUpdateToEvents({ connection: "connecting" }, ctx), []);
  assert.deepEqual(connectionUpdateToEvents({ qr: "2@abc" }, ctx), []);
  assert.deepEqual(identityOf(undefined), { pn: null, lid: null });
});

test("messages.upsert notify maps to reply_captured for inbound messages only", () => {
  const upsert = {
    type: "notify",
    messages: [
      { key: { remoteJid: "120363000000000001@g.us", fromMe: false, id: "3EB0A1" }, message: {} },
      { key: { remoteJid: "120363000000000001@g.us", fromMe: true, id: "3EB0A2" }, message: {} },
    ],
  };
  assert.deepEqual(messagesUpsertToEvents(upsert, { account: "acct", generation: 1 }), [
    {
      type: "reply_captured",
      reply_id: "acct/3EB0A1",
      account: "acct",
      generation: 1,
      chat: "120363000000000001@g.us",
      kind: "text",
    },
  ]);
  assert.deepEqual(messagesUpsertToEvents({ ...upsert, type: "append" }, { account: "a", generation: 1 }), []);
});

test("only messages someone sent us, with content, are inbound", () => {
  const chat = "4917000000001@s.whatsapp.net";
  assert.equal(isInboundMessage(inbound(chat, "A1", "hi")), true);
  const mine = inbound(chat, "A2", "hi");
  mine.key.fromMe = true;
  assert.equal(isInboundMessage(mine), false);
  assert.equal(isInboundMessage(inbound("status@broadcast", "A3", "story")), false);
  assert.equal(isInboundMessage({ ...inbound(chat, "A4", "x"), message: null }), false); // a stub
  assert.equal(isInboundMessage({ ...inbound(chat, "A5", "x"), message: { protocolMessage: { type: 0 } } }), false);
  assert.equal(isInboundMessage({ key: { remoteJid: chat, fromMe: false }, message: {} }), false); // no id
  assert.equal(isInboundMessage(undefined), false);
});

test("a captured reply carries its chat and the message id every transmission will use", () => {
  const id = baileysMessageId();
  assert.match(id, /^3EB0[0-9A-F]{36}$/);
  assert.notEqual(baileysMessageId(), id);
  const event = replyCapturedEvent(inbound("120363000000000001@g.us", "3EB0A1", "hi"), {
    ...socketFields({ type: "open_socket", account: "acct", generation: 3, attempt: 7 }),
    messageId: id,
  }); // a capture names the generation, not the socket
  assert.deepEqual(event, {
    type: "reply_captured",
    reply_id: "acct/3EB0A1",
    account: "acct",
    generation: 3,
    chat: "120363000000000001@g.us",
    kind: "text",
    message_id: id,
  });
});

test("the socket fields come from the open_socket effect, its attempt included", () => {
  assert.deepEqual(socketFields({ type: "open_socket", account: "a", generation: 4, attempt: 9 }), {
    account: "a",
    generation: 4,
    attempt: 9,
  });
  assert.deepEqual(activityEvent({ account: "a", generation: 4, attempt: 9 }, "frame"), {
    type: "activity",
    account: "a",
    generation: 4,
    attempt: 9,
    kind: "frame",
  });
  const close = boom(440, "superseded");
  assert.equal(statusOf({ connection: "close", lastDisconnect: { error: close } }), 440);
  assert.equal(statusOf({ connection: "close", lastDisconnect: { error: boom(null, "owner") } }), null);
});

test("a send that failed with 428 before writing is io_started false", () => {
  const effect = { reply_id: "r1", generation: 1, attempt: 2 };
  const boom = Object.assign(new Error("Connection Closed"), { output: { statusCode: 428 } });
  assert.deepEqual(sendErrorToEvent(effect, boom, { wroteBytes: true }), {
    type: "transmit_failed",
    reply_id: "r1",
    generation: 1,
    attempt: 2,
    io_started: false,
    error: "Connection Closed",
  });
  assert.equal(sendErrorToEvent(effect, new Error("timeout"), { wroteBytes: true }).io_started, true);
  assert.equal(sendErrorToEvent(effect, new Error("x"), { wroteBytes: false }).io_started, false);
  assert.deepEqual(sendAckEvent(effect), { type: "transmit_acked", reply_id: "r1", generation: 1, attempt: 2 });
});

test("rateLimit lets one fact per key through per interval", () => {
  const limit = rateLimit(250);
  assert.deepEqual(
    [0, 10, 249, 250, 260, 499, 500].map((now) => limit.allow("a/1/frame", now)),
    [true, false, false, true, false, false, true],
  );
  assert.equal(limit.allow("a/1/inbound", 260), true); // each key on its own
  limit.forget("a/1/");
  assert.equal(limit.allow("a/1/frame", 501), true);
  assert.equal(ACTIVITY_PER_SECOND, 4);
});

test("every DisconnectReason drives the engine to the documented decision", async () => {
  const engine = await HeirlineEngine.start({ command: COMMAND, seed: 7, config: { health_timer: false } });
  const expected = {
    connectionClosed: "lifecycle.retry_scheduled",
    connectionLost: "lifecycle.retry_scheduled",
    connectionReplaced: "lifecycle.replaced",
    timedOut: "lifecycle.retry_scheduled",
    loggedOut: "lifecycle.logged_out",
    badSession: "lifecycle.retry_scheduled",
    restartRequired: "lifecycle.reconnect",
    multideviceMismatch: "lifecycle.logged_out",
    forbidden: "lifecycle.forbidden",
    unavailableService: "lifecycle.retry_scheduled",
  };
  let now = 0;
  for (const [name, code] of Object.entries(DisconnectReason)) {
    const ctx = { account: name, generation: 1, attempt: 1, me };
    await engine.send({ type: "start", account: name }, (now += 10));
    for (const ev of connectionUpdateToEvents({ connection: "open" }, ctx)) await engine.send(ev, (now += 10));
    const [ev] = connectionUpdateToEvents(closed(code), ctx);
    const effects = await engine.send(ev, (now += 10));
    const codes = effects.filter((e) => e.type === "log").map((e) => e.code);
    assert.ok(codes.includes(expected[name]), `${name} (${code}): ${codes}`);
  }
  assert.equal((await engine.close()).code, 0);
});

// ------------------------------------------------------------------ the gateway, end to end

const GROUP = "120363000000000001@g.us";
const OTHER = { id: "4915199999999:1@s.whatsapp.net", lid: "999999999999999:1@lid" };

/** A gateway on the real engine with fake Baileys sockets; records what goes in and out. */
async function gatewayFor(t, { config = { health_timer: false }, mapping, ...options } = {}) {
  const engine = await HeirlineEngine.start({ command: COMMAND, seed: 7, config, mapping });
  const fed = []; // every event the gateway gives the engine, in order
  const send = engine.send.bind(engine);
  engine.send = (event, now) => {
    fed.push(event);
    return send(event, now);
  };
  const sockets = [];
  const effects = [];
  const errors = [];
  const messages = [];
  const gateway = attachBaileys(engine, {
    makeSocket: (fields) => {
      const sock = new FakeBaileysSocket(fields);
      sockets.push(sock);
      return sock;
    },
    onEffect: (effect) => effects.push(effect),
    onError: (err) => errors.push(err),
    onMessage: (message, reply) => messages.push({ message, reply }),
    ...options,
  });
  t.after(async () => {
    await gateway.close();
    await engine.close();
  });
  const logged = (code) => effects.some((e) => e.type === "log" && e.code === code);
  /** The events fed so far, without `activity` (reported as frames and messages come). */
  const facts = () => fed.filter((e) => e.type !== "activity");
  return { engine, gateway, fed, facts, sockets, effects, errors, messages, logged };
}

test("the incident on Baileys: captured on A, A drops with 408, sent once through successor B", async (t) => {
  const { gateway, fed, facts, sockets, effects, errors, messages, logged } = await gatewayFor(t);
  await gateway.start("acct");
  assert.deepEqual(
    sockets.map((s) => s.fields),
    [{ account: "acct", generation: 1, attempt: 1 }],
  );
  const [a] = sockets;
  a.ev.emit("connection.update", { connection: "connecting" });
  a.ev.emit("connection.update", { qr: "2@abc" });
  a.login(me);
  await until(() => logged("lifecycle.open"), 5000, "A open");
  assert.equal(gateway.socket("acct", 1), a);
  a.receive(inbound(GROUP, "3EB0A1", "ping"));
  const { message, reply } = await until(() => messages[0], 5000, "onMessage");
  assert.equal(message.key.id, "3EB0A1");
  assert.equal(reply.replyId, "acct/3EB0A1");
  assert.deepEqual([reply.account, reply.generation], ["acct", 1]);
  assert.match(reply.messageId, /^3EB0[0-9A-F]{36}$/);

  a.drop(DisconnectReason.connectionLost);
  await until(() => logged("lifecycle.retry_scheduled"), 5000, "retry after 408");
  assert.equal(gateway.socket("acct", 1), undefined); // closed: no longer listened to
  await gateway.start("acct"); // the health monitor's restart: successor B
  assert.equal(gateway.generation("acct"), 2);
  const b = sockets[1];
  assert.deepEqual(b.fields, { account: "acct", generation: 2, attempt: 2 }); // the account's next
  await reply.ready("pong");
  assert.ok(logged("reply_waiting"));
  assert.deepEqual(b.sent, []);
  b.login(me);
  const delivered = await until(() => effects.find((e) => e.type === "reply_delivered"), 5000, "delivery");
  assert.deepEqual(delivered, { type: "reply_delivered", reply_id: "acct/3EB0A1", generation: 2, via: "successor" });
  assert.deepEqual(b.sent, [{ jid: GROUP, content: { text: "pong" }, options: { messageId: reply.messageId } }]);
  assert.deepEqual(a.sent, []);
  assert.deepEqual(errors, []);
  assert.deepEqual(
    effects.filter((e) => e.type === "rejected"),
    [],
  );
  // What the gateway told the engine, in order: Baileys' facts in heirline's shapes.
  assert.deepEqual(
    facts().map((e) => e.type),
    [
      "start",
      "mapping_learned", // creds.update with me.id and me.lid
      "socket_opened",
      "reply_captured",
      "socket_closed",
      "start",
      "reply_ready",
      "socket_opened", // B: creds.update with the same pair is not reported again
      "transmit_acked",
    ],
  );
  const f = facts();
  assert.deepEqual(f[1], { type: "mapping_learned", pn: me.id, lid: me.lid });
  assert.deepEqual(f[2], { type: "socket_opened", account: "acct", generation: 1, attempt: 1, pn: me.id, lid: me.lid });
  assert.deepEqual(f[3], {
    type: "reply_captured",
    reply_id: "acct/3EB0A1",
    account: "acct",
    generation: 1,
    chat: GROUP,
    kind: "text",
    message_id: reply.messageId,
  });
  assert.deepEqual(f[4], { type: "socket_closed", account: "acct", generation: 1, attempt: 1, status: 408 });
  assert.deepEqual(f[7], { type: "socket_opened", account: "acct", generation: 2, attempt: 2, pn: me.id, lid: me.lid });
  assert.deepEqual(f[8], { type: "transmit_acked", reply_id: "acct/3EB0A1", generation: 2, attempt: 2 });
  // The inbound message was also reported as activity of socket 1, before its capture.
  const i = fed.findIndex((e) => e.type === "reply_captured");
  assert.deepEqual(fed[i - 1], { type: "activity", account: "acct", generation: 1, attempt: 1, kind: "inbound" });
});

test("relinked to another number: the reply is refused and B never sends", async (t) => {
  const { gateway, sockets, effects, messages, logged } = await gatewayFor(t);
  await gateway.start("acct");
  sockets[0].login(me);
  await until(() => logged("lifecycle.open"));
  sockets[0].receive(inbound(GROUP, "3EB0A2", "ping"));
  const { reply } = await until(() => messages[0]);
  sockets[0].drop(DisconnectReason.connectionLost);
  await gateway.start("acct");
  await reply.ready("pong");
  sockets[1].login(OTHER);
  const failed = await until(() => effects.find((e) => e.type === "reply_failed"));
  assert.equal(failed.reply_id, "acct/3EB0A2");
  assert.equal(failed.outcome, "refused");
  assert.deepEqual(sockets[1].sent, []);
  assert.deepEqual(sockets[0].sent, []);
});

test("a failed send: before writing (428) it is sent again, after writing with the same id", async (t) => {
  const { gateway, sockets, effects, messages, fed, logged } = await gatewayFor(t);
  await gateway.start("acct");
  const [a] = sockets;
  a.login(me);
  await until(() => logged("lifecycle.open"));
  const outcomes = [
    () => Promise.reject(fakeBoom("Connection Closed", DisconnectReason.connectionClosed)),
    () => Promise.reject(new Error("Timed Out")),
    () => Promise.resolve({}),
  ];
  a.onSend = () => outcomes.shift()();
  a.receive(inbound(GROUP, "3EB0A3", "ping"));
  const { reply } = await until(() => messages[0]);
  await reply.ready("pong");
  const delivered = await until(() => effects.find((e) => e.type === "reply_delivered"));
  assert.equal(delivered.via, "origin");
  assert.equal(a.sent.length, 3);
  assert.ok(a.sent.every((s) => s.options.messageId === reply.messageId));
  const transmits = effects.filter((e) => e.type === "transmit");
  assert.deepEqual(
    transmits.map((e) => [e.attempt, e.transmission]),
    [
      [1, 1],
      [1, 2],
      [1, 3],
    ],
  );
  const failures = fed.filter((e) => e.type === "transmit_failed");
  assert.deepEqual(
    failures.map((e) => [e.attempt, e.io_started, e.error]),
    [
      [1, false, "Connection Closed"],
      [1, true, "Timed Out"],
    ],
  );
});

test("a transmit for a socket that is not open fails before any I/O", async (t) => {
  const { gateway, sockets, fed } = await gatewayFor(t);
  await gateway.start("acct");
  // The engine would not route to a closed socket; a stale transmit must not touch one.
  await gateway._carryOut({
    type: "transmit",
    reply_id: "r9",
    account: "acct",
    generation: 1,
    attempt: 1,
    message_id: "3EB0FF",
    chat: GROUP,
    kind: "text",
    payload: "x",
    transmission: 1,
  });
  const failed = await until(() => fed.find((e) => e.type === "transmit_failed"));
  assert.deepEqual(failed, {
    type: "transmit_failed",
    reply_id: "r9",
    generation: 1,
    attempt: 1,
    io_started: false,
    error: "heirline: socket 1 of generation 1 is not open",
  });
  assert.deepEqual(sockets[0].sent, []);
});

test("close_socket ends the Baileys socket with its status; the close comes back as socket_closed", async (t) => {
  const { gateway, sockets, fed, logged } = await gatewayFor(t);
  await gateway.start("acct");
  const [a] = sockets;
  a.login(me);
  await until(() => logged("lifecycle.open"));
  await gateway.feed({ type: "watchdog_silence", account: "acct", generation: 1, attempt: 1, silent_ms: 600000 });
  assert.equal(a.ended.length, 1);
  assert.equal(a.ended[0].output.statusCode, 499);
  assert.match(a.ended[0].message, /^heirline: watchdog: no traffic/);
  await until(() => fed.some((e) => e.type === "socket_closed"));
  assert.deepEqual(fed.at(-1), { type: "socket_closed", account: "acct", generation: 1, attempt: 1, status: 499 });

  await gateway.stop("acct");
  assert.equal(gateway.generation("acct"), undefined);
  await assert.rejects(gateway.stop("acct"), /account "acct" is not running/);
});

// ------------------------------------------------------------------ protocol 2: the watchdog

/** A gateway whose clock the test moves, on an engine with a 1 s watchdog. */
async function clockedGateway(t, options = {}) {
  const clock = { now: 1000 };
  const gw = await gatewayFor(t, {
    config: { health_timer: false, watchdog_ms: 1000 },
    now: () => clock.now,
    ...options,
  });
  await gw.gateway.start("acct");
  gw.sockets[0].login(me);
  await until(() => gw.logged("lifecycle.open"));
  return { ...gw, clock };
}

test("the engine's watchdog closes a silent socket with 499, carried out on Baileys", async (t) => {
  const { sockets, fed, effects, clock } = await clockedGateway(t);
  const [a] = sockets;
  assert.ok(effects.some((e) => e.type === "start_timer" && e.timer === "watchdog/acct/1" && e.deadline_ms === 2000));
  clock.now = 2000; // a second of silence: the timer fires on the gateway's next look
  await until(() => a.ended.length, 5000, "the watchdog close");
  assert.equal(a.ended[0].output.statusCode, 499);
  assert.equal(a.ended[0].message, "heirline: watchdog: no traffic for 1000 ms");
  await until(() => fed.some((e) => e.type === "socket_closed"));
  assert.deepEqual(
    fed.filter((e) => e.type === "timer_fired" || e.type === "socket_closed"),
    [
      { type: "timer_fired", timer: "watchdog/acct/1" },
      { type: "socket_closed", account: "acct", generation: 1, attempt: 1, status: 499 },
    ],
  );
  // ... and the controller retries on a fresh socket, as after any lost connection.
  await until(() => effects.some((e) => e.type === "log" && e.code === "lifecycle.retry_scheduled"));
});

test("frames on sock.ws are activity that re-arms the watchdog (a few per second at most)", async (t) => {
  const { sockets, fed, effects, clock } = await clockedGateway(t);
  const [a] = sockets;
  for (let i = 0; i < 20; i++) a.frame(); // a burst at one instant: one fact
  clock.now = 1100;
  a.frame();
  clock.now = 1250; // 250 ms after the first report: 4 per second
  a.frame();
  a.frame();
  clock.now = 1900;
  a.frame();
  await until(() => fed.filter((e) => e.type === "activity").length === 3, 5000, "three activity facts");
  assert.deepEqual(
    fed.filter((e) => e.type === "activity"),
    Array(3).fill({ type: "activity", account: "acct", generation: 1, attempt: 1, kind: "frame" }),
  );
  clock.now = 2000; // the watchdog fires: there was activity, so it is re-armed, not a close
  await until(() => effects.some((e) => e.type === "start_timer" && e.deadline_ms === 2900), 5000, "re-armed");
  assert.deepEqual(a.ended, []);
  clock.now = 2900; // silent since 1900: now it closes
  await until(() => a.ended.length, 5000, "the watchdog close");
  assert.equal(a.ended[0].output.statusCode, 499);
});

test("activity before the socket is open, and after it closed, is not reported", async (t) => {
  const { gateway, sockets, fed } = await gatewayFor(t);
  await gateway.start("acct");
  const [a] = sockets;
  a.frame(); // the handshake: not open yet
  a.login(me);
  a.drop(DisconnectReason.connectionLost);
  a.frame(); // a closed socket is no longer listened to
  a.receive(inbound(GROUP, "3EB0B0", "late"));
  await gateway.feed({ type: "health_check" }); // everything emitted before has been fed
  assert.deepEqual(
    fed.filter((e) => e.type === "activity" || e.type === "reply_captured"),
    [],
  );
});

test("messages.upsert is inbound activity, even when no message is one to answer", async (t) => {
  const { sockets, fed, gateway, clock } = await clockedGateway(t);
  const mine = inbound(GROUP, "3EB0C1", "mine");
  mine.key.fromMe = true;
  sockets[0].receive(mine);
  clock.now = 1500;
  sockets[0].ev.emit("messages.upsert", { messages: [inbound(GROUP, "3EB0C2", "old")], type: "append" });
  await gateway.feed({ type: "health_check" });
  assert.deepEqual(
    fed.filter((e) => e.type === "activity" || e.type === "reply_captured"),
    Array(2).fill({ type: "activity", account: "acct", generation: 1, attempt: 1, kind: "inbound" }),
  );
});

// ------------------------------------------------------------------ protocol 2: socket attempts

test("a late close of an older socket does not touch the current one", async (t) => {
  const { gateway, sockets, fed, effects, logged } = await gatewayFor(t);
  await gateway.start("acct");
  const [a] = sockets;
  a.login(me);
  await until(() => logged("lifecycle.open"));
  a.deferClose = true; // Baileys reports A's close only after B is up
  await gateway.start("acct"); // generation 2: A (socket 1) is closed, B is socket 2
  assert.equal(a.ended.length, 1);
  const b = sockets[1];
  assert.deepEqual(b.fields, { account: "acct", generation: 2, attempt: 2 });
  b.login(me);
  await until(() => effects.filter((e) => e.type === "log" && e.code === "lifecycle.open").length === 2);
  a.emitClose();
  await until(() => logged("late_close"), 5000, "the late close");
  assert.deepEqual(fed.at(-1), { type: "socket_closed", account: "acct", generation: 1, attempt: 1, status: null });
  assert.equal(gateway.generation("acct"), 2);
  assert.equal(gateway.socket("acct", 2), b);
  assert.equal(b.ended.length, 0);
  assert.ok(!logged("lifecycle.retry_scheduled"));
});

test("a 515 restart opens the next socket of the same generation", async (t) => {
  const { gateway, sockets, fed, logged } = await gatewayFor(t);
  await gateway.start("acct");
  sockets[0].login(me);
  await until(() => logged("lifecycle.open"));
  sockets[0].drop(DisconnectReason.restartRequired);
  await until(() => sockets.length === 2, 5000, "the reconnect");
  assert.deepEqual(sockets[1].fields, { account: "acct", generation: 1, attempt: 2 });
  sockets[1].login(me);
  await until(() => fed.filter((e) => e.type === "socket_opened").length === 2);
  assert.deepEqual(
    fed.filter((e) => e.type === "socket_opened").map((e) => [e.generation, e.attempt]),
    [
      [1, 1],
      [1, 2],
    ],
  );
});

// ------------------------------------------------------------------ the rest

test("the same message delivered twice is answered once", async (t) => {
  const { gateway, sockets, messages, effects, logged } = await gatewayFor(t);
  await gateway.start("acct");
  sockets[0].login(me);
  await until(() => logged("lifecycle.open"));
  sockets[0].receive(inbound(GROUP, "3EB0A4", "ping"));
  sockets[0].receive(inbound(GROUP, "3EB0A4", "ping"), inbound(GROUP, "3EB0A5", "again"));
  await until(() => messages.length === 2 && effects.filter((e) => e.type === "rejected").length === 1);
  assert.deepEqual(
    messages.map((m) => m.reply.replyId),
    ["acct/3EB0A4", "acct/3EB0A5"],
  );
  assert.equal(effects.find((e) => e.type === "rejected").code, "duplicate_reply");
  // A message of our own, a status and an append (history) are not captured.
  const mine = inbound(GROUP, "3EB0A6", "mine");
  mine.key.fromMe = true;
  sockets[0].receive(mine, inbound("status@broadcast", "3EB0A7", "story"));
  sockets[0].ev.emit("messages.upsert", { messages: [inbound(GROUP, "3EB0A8", "old")], type: "append" });
  await gateway.feed({ type: "health_check" }); // everything emitted before has been fed
  assert.equal(messages.length, 2);
});

test("a socket factory that throws is a close without a status, reported to onError", async (t) => {
  const { gateway, errors, fed, logged } = await gatewayFor(t, {
    makeSocket: () => {
      throw new Error("auth dir unreadable");
    },
  });
  await gateway.start("acct");
  await until(() => logged("lifecycle.retry_scheduled"));
  assert.deepEqual(fed.at(-1), { type: "socket_closed", account: "acct", generation: 1, attempt: 1, status: null });
  assert.deepEqual(
    errors.map((e) => e.message),
    ["auth dir unreadable"],
  );
});

test("a timer fires at its deadline on the gateway's clock, never before", async (t) => {
  let now = 1000;
  const { gateway, sockets, effects, logged } = await gatewayFor(t, { now: () => now });
  await gateway.start("acct");
  sockets[0].login(me);
  await until(() => logged("lifecycle.open"));
  await gateway.feed({
    type: "reply_captured",
    reply_id: "r1",
    account: "acct",
    generation: 1,
    chat: GROUP,
    deadline_ms: 1030,
  });
  assert.ok(effects.some((e) => e.type === "start_timer" && e.timer === "deadline/r1" && e.deadline_ms === 1030));
  await new Promise((resolve) => setTimeout(resolve, 120)); // 30 ms of real time are long gone
  assert.equal(
    effects.find((e) => e.type === "reply_failed"),
    undefined,
  );
  now = 1030;
  const failed = await until(() => effects.find((e) => e.type === "reply_failed"));
  assert.deepEqual([failed.reply_id, failed.outcome], ["r1", "failed"]);
});

test("attachBaileys refuses what it cannot drive", async () => {
  assert.throws(() => attachBaileys({}, { makeSocket() {} }), /must be a HeirlineEngine/);
  const monotonic = { send() {}, clock: "monotonic" };
  assert.throws(() => attachBaileys(monotonic, { makeSocket() {} }), /clock "host"/);
  assert.throws(() => attachBaileys({ send() {}, clock: "host" }, {}), /options\.makeSocket/);
  const host = { send() {}, clock: "host" };
  assert.throws(() => attachBaileys(host, { makeSocket() {}, activityPerSecond: 0 }), /activityPerSecond/);
});

test("close() shuts the engine down: every open reply ends once, reported to onEffect", async (t) => {
  const { engine, gateway, sockets, fed, effects, messages, logged } = await gatewayFor(t);
  await gateway.start("acct");
  sockets[0].login(me);
  await until(() => logged("lifecycle.open"));
  sockets[0].receive(inbound(GROUP, "3EB0A9", "ping"), inbound(GROUP, "3EB0AA", "pong"));
  await until(() => messages.length === 2);
  sockets[0].onSend = () => new Promise(() => {}); // the second reply's send never settles
  await messages[1].reply.ready("in flight");
  const before = fed.length;
  await gateway.close({ reason: "deploy" });
  assert.deepEqual(fed.slice(before), [{ type: "shutdown", reason: "deploy" }]); // nothing else
  assert.deepEqual(
    effects.filter((e) => e.type === "reply_failed").map((e) => [e.reply_id, e.outcome, e.reason]),
    [
      ["acct/3EB0A9", "failed", "deploy before the reply was sent"],
      ["acct/3EB0AA", "unknown", "deploy; a transmission may have reached the receiver without an ack"],
    ],
  );
  assert.equal(sockets[0].ended.length, 1); // by the engine's close_socket
  assert.equal(sockets[0].ended[0].message, "heirline: deploy");
  // The engine is shut down: its own close has nothing more to end.
  const exit = await engine.close();
  assert.deepEqual([exit.code, exit.end, exit.effects], [0, null, []]);
});

test("after close the gateway feeds nothing and ends its sockets", async (t) => {
  const { gateway, sockets, fed, logged } = await gatewayFor(t);
  await gateway.start("acct");
  sockets[0].login(me);
  await until(() => logged("lifecycle.open"));
  const before = fed.length;
  await gateway.close({ shutdown: false });
  assert.equal(sockets[0].ended.length, 1);
  sockets[0].receive(inbound(GROUP, "3EB0A9", "late"));
  sockets[0].frame();
  await assert.rejects(gateway.start("acct"), /gateway is closed/);
  assert.equal(fed.length, before);
  assert.equal(await gateway.close(), undefined); // a second close is the first one
});
