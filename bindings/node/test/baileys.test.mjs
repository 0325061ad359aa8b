// The Baileys mapping of examples/baileys.mjs, with Baileys' real DisconnectReason values.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connectionUpdateToEvents,
  identityOf,
  messagesUpsertToEvents,
  sendErrorToEvent,
  statusOf,
} from "../examples/baileys.mjs";
import { HeirlineEngine } from "../index.mjs";
import { COMMAND } from "./support/helpers.mjs";

// Copied from Baileys' `enum DisconnectReason` (WhiskeySockets/Baileys, src/Types/index.ts);
// hard-coded so the tests need no download of the `baileys` package.
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

test("connection.update maps to socket_opened / socket_closed", () => {
  const ctx = { account: "acct", generation: 2, me };
  assert.deepEqual(connectionUpdateToEvents({ connection: "open" }, ctx), [
    { type: "socket_opened", account: "acct", generation: 2, pn: me.id, lid: me.lid },
  ]);
  assert.deepEqual(connectionUpdateToEvents(closed(DisconnectReason.connectionLost), ctx), [
    { type: "socket_closed", account: "acct", generation: 2, status: 408 },
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

test("a send that failed with 428 before writing is io_started false", () => {
  const effect = { reply_id: "r1", generation: 1 };
  const boom = Object.assign(new Error("Connection Closed"), { output: { statusCode: 428 } });
  assert.equal(sendErrorToEvent(effect, boom, { wroteBytes: true }).io_started, false);
  assert.equal(sendErrorToEvent(effect, new Error("timeout"), { wroteBytes: true }).io_started, true);
  assert.equal(sendErrorToEvent(effect, new Error("x"), { wroteBytes: false }).io_started, false);
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
    const ctx = { account: name, generation: 1, me };
    await engine.send({ type: "start", account: name }, (now += 10));
    for (const ev of connectionUpdateToEvents({ connection: "open" }, ctx)) await engine.send(ev, (now += 10));
    const [ev] = connectionUpdateToEvents(closed(code), ctx);
    const effects = await engine.send(ev, (now += 10));
    const codes = effects.filter((e) => e.type === "log").map((e) => e.code);
    assert.ok(codes.includes(expected[name]), `${name} (${code}): ${codes}`);
  }
  assert.equal((await engine.close()).code, 0);
});
