// A Baileys gateway driven by heirline: Baileys' events become heirline events, heirline's
// effects become Baileys calls. The mapping functions are exported (and tested in
// test/baileys.test.mjs); `HeirlineGateway` shows how a gateway carries the effects out.
//
// Usage (in a project that depends on `baileys`):
//   import makeWASocket, { useMultiFileAuthState } from "baileys";
//   const gw = await HeirlineGateway.start({ account: "main", makeSocket: async () => {
//     const { state, saveCreds } = await useMultiFileAuthState("auth/main");
//     const sock = makeWASocket({ auth: state }); sock.ev.on("creds.update", saveCreds); return sock; } });
import { HeirlineEngine } from "../index.mjs";

/** The close status of a `connection.update`: `lastDisconnect.error.output.statusCode` (a Boom). */
export function statusOf(update) {
  const code = update?.lastDisconnect?.error?.output?.statusCode;
  return Number.isInteger(code) ? code : null;
}

/** `creds.me` (`{ id: "<pn>:<device>@s.whatsapp.net", lid?: "<lid>:<device>@lid" }`) as identity fields. */
export function identityOf(me) {
  return { pn: me?.id ?? null, lid: me?.lid ?? null };
}

/**
 * heirline events for one Baileys `connection.update` of controller `generation`.
 * "open" reports the self identity from `creds.me`; "close" reports the status code;
 * "connecting" and QR updates are not facts the engine needs.
 */
export function connectionUpdateToEvents(update, { account, generation, me }) {
  if (update.connection === "open") {
    return [{ type: "socket_opened", account, generation, ...identityOf(me) }];
  }
  if (update.connection === "close") {
    return [{ type: "socket_closed", account, generation, status: statusOf(update) }];
  }
  return [];
}

/**
 * `reply_captured` events for a `messages.upsert`: one per new inbound message
 * (`type: "notify"`, not sent by us), the reply id being the inbound message's id.
 */
export function messagesUpsertToEvents(upsert, { account, generation, kind = "text" }) {
  if (upsert.type !== "notify") return [];
  return upsert.messages
    .filter((m) => m.key && !m.key.fromMe && m.key.remoteJid && m.key.id)
    .map((m) => ({
      type: "reply_captured",
      reply_id: `${account}/${m.key.id}`,
      account,
      generation,
      chat: m.key.remoteJid,
      kind,
    }));
}

/** The `transmit_failed` event for an error thrown by `sock.sendMessage`. */
export function sendErrorToEvent(effect, err, { wroteBytes }) {
  const status = err?.output?.statusCode;
  // Baileys throws 428 "Connection Closed" before writing when the socket is already gone.
  const ioStarted = wroteBytes && status !== 428;
  return {
    type: "transmit_failed",
    reply_id: effect.reply_id,
    generation: effect.generation,
    io_started: ioStarted,
    error: String(err?.message ?? err),
  };
}

/** One account on Baileys, its controller decisions made by heirline. Illustrative. */
export class HeirlineGateway {
  static async start({ account, makeSocket, engineOptions = {}, now = () => Date.now() }) {
    const engine = await HeirlineEngine.start(engineOptions);
    const gw = new HeirlineGateway(engine, account, makeSocket, now);
    await gw.feed({ type: "start", account });
    return gw;
  }

  constructor(engine, account, makeSocket, now) {
    Object.assign(this, { engine, account, makeSocket, now });
    this.sockets = new Map(); // generation -> Baileys socket
    this.timers = new Map(); // key -> timeout
    this.queue = Promise.resolve(); // events are fed one at a time, in order
  }

  /** Feed one event to the engine and carry out its effects (serialised). */
  feed(event) {
    this.queue = this.queue.then(async () => {
      const effects = await this.engine.send(event, this.now());
      for (const effect of effects) await this.carryOut(effect);
    });
    return this.queue;
  }

  async carryOut(effect) {
    switch (effect.type) {
      case "open_socket": {
        const { generation } = effect;
        const sock = await this.makeSocket();
        this.sockets.set(generation, sock);
        const ctx = () => ({ account: this.account, generation, me: sock.authState?.creds?.me });
        sock.ev.on("connection.update", (u) => {
          for (const ev of connectionUpdateToEvents(u, ctx())) this.feed(ev);
        });
        sock.ev.on("creds.update", (creds) => {
          const me = creds.me ?? sock.authState?.creds?.me;
          if (me?.id && me?.lid) this.feed({ type: "mapping_learned", pn: me.id, lid: me.lid });
        });
        sock.ev.on("messages.upsert", (u) => {
          for (const ev of messagesUpsertToEvents(u, ctx())) this.feed(ev);
        });
        break;
      }
      case "close_socket":
        this.sockets.get(effect.generation)?.end(new Error(effect.reason));
        break;
      case "start_timer": {
        clearTimeout(this.timers.get(effect.key));
        const delay = Math.max(0, effect.deadline_ms - this.now());
        this.timers.set(effect.key, setTimeout(() => this.feed({ type: "timer_fired", key: effect.key }), delay));
        break;
      }
      case "cancel_timer":
        clearTimeout(this.timers.get(effect.key));
        this.timers.delete(effect.key);
        break;
      case "transmit": {
        const sock = this.sockets.get(effect.generation);
        let wroteBytes = false;
        try {
          if (!sock) throw Object.assign(new Error("no socket"), { output: { statusCode: 428 } });
          wroteBytes = true;
          // The same message id on every attempt: the receiver never shows it twice.
          await sock.sendMessage(effect.chat, { text: effect.payload }, { messageId: effect.message_id });
          this.feed({ type: "transmit_acked", reply_id: effect.reply_id, generation: effect.generation });
        } catch (err) {
          this.feed(sendErrorToEvent(effect, err, { wroteBytes }));
        }
        break;
      }
      case "log":
        console.log(`[heirline ${effect.level}] ${effect.code}: ${effect.message}`);
        break;
      default:
        break; // registered, unregistered, reply_delivered, reply_failed, rejected: for metrics
    }
  }

  async close() {
    for (const t of this.timers.values()) clearTimeout(t);
    for (const s of this.sockets.values()) s.end?.(undefined);
    return this.engine.close();
  }
}
