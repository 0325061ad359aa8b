// heirline/baileys: Baileys sockets driven by the heirline engine (protocol 2).
//
// Baileys' events become heirline events, heirline's effects become Baileys calls:
//   connection.update  open  -> socket_opened (self identity from creds.me: me.id, me.lid)
//                      close -> socket_closed (status: lastDisconnect.error.output.statusCode)
//   creds.update       me    -> mapping_learned (me.id <-> me.lid)
//   messages.upsert          -> activity "inbound"; for `notify`, reply_captured for each
//                               inbound message (options.accept)
//   sock.ws "frame"          -> activity "frame" (every frame Baileys decodes; rate-limited)
//   open_socket  -> options.makeSocket(...), remembered by its attempt number
//   close_socket -> sock.end(error with the status; 499: the engine's watchdog)
//   transmit     -> sock.sendMessage(chat, content, { messageId })  -> transmit_acked / _failed
//   start_timer / cancel_timer -> setTimeout / clearTimeout -> timer_fired
// Every fact about a socket carries its attempt, so the engine tells a late fact about an
// older socket from one about the current socket. The pure mapping functions are exported
// for gateways that run their own loop.
import { randomBytes } from "node:crypto";
import { monotonicClock } from "./index.mjs";

/** Baileys' `DisconnectReason.connectionClosed`: thrown by a send before anything is written. */
export const CONNECTION_CLOSED = 428;

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
 * The fields that name one socket in the events about it, taken from the `open_socket`
 * effect that asked for it: its account, generation and attempt number. Every socket event
 * is built from these, so a field the protocol adds to sockets is added here, once.
 */
export function socketFields(open) {
  return { account: open.account, generation: open.generation, attempt: open.attempt };
}

/** The most `activity` facts of one kind a socket reports per second, by default. */
export const ACTIVITY_PER_SECOND = 4;

/**
 * The `activity` event for socket `fields`: `"frame"` (the transport received something:
 * feeds the engine's watchdog) or `"inbound"` (messages arrived: feeds the watchdog and the
 * health stale rule).
 */
export function activityEvent(fields, kind) {
  return { type: "activity", account: fields.account, generation: fields.generation, attempt: fields.attempt, kind };
}

/**
 * A rate limit per key: `allow(key, now)` is true at most once per `intervalMs` of `now`
 * (the first call always is). The engine's watchdog needs one fact per several minutes; a
 * busy socket receives many frames a second, and each fact is a round trip to the engine.
 */
export function rateLimit(intervalMs) {
  /** @type {Map<string, number>} */
  const last = new Map();
  return {
    allow(key, now) {
      const before = last.get(key);
      if (before !== undefined && now - before < intervalMs) return false;
      last.set(key, now);
      return true;
    },
    forget(prefix) {
      for (const key of last.keys()) if (key.startsWith(prefix)) last.delete(key);
    },
  };
}

/**
 * heirline events for one Baileys `connection.update` of a socket. "open" reports the self
 * identity `me` (from `creds.me`); "close" reports the status code; "connecting" and QR
 * updates are not facts the engine needs.
 * @param {object} update
 * @param {{me?: object} & Record<string, unknown>} socket the socket's fields and its `me`
 */
export function connectionUpdateToEvents(update, { me, ...fields }) {
  if (update.connection === "open") {
    return [{ type: "socket_opened", ...fields, ...identityOf(me) }];
  }
  if (update.connection === "close") {
    return [{ type: "socket_closed", ...fields, status: statusOf(update) }];
  }
  return [];
}

/**
 * A message someone else sent us that deserves a reply: new (`notify`), not our own, with a
 * chat and an id, with content, not a status broadcast or a protocol message (revoke,
 * ephemeral setting, ...).
 */
export function isInboundMessage(message) {
  const key = message?.key;
  return Boolean(
    key &&
    !key.fromMe &&
    key.remoteJid &&
    key.id &&
    key.remoteJid !== "status@broadcast" &&
    message.message &&
    !message.message.protocolMessage,
  );
}

/** The messages of a `messages.upsert` that `accept` lets through (only `type: "notify"`). */
export function inboundMessages(upsert, accept = isInboundMessage) {
  if (upsert?.type !== "notify" || !Array.isArray(upsert.messages)) return [];
  return upsert.messages.filter((m) => accept(m));
}

/** The heirline reply id for an inbound message: `<account>/<message id>`. */
export function replyIdOf(account, message) {
  return `${account}/${message.key.id}`;
}

/**
 * The `reply_captured` event for an inbound message on socket `fields`: the reply goes to
 * the message's chat, and every transmission of it carries `messageId` (when given).
 */
export function replyCapturedEvent(message, { account, generation, kind = "text", messageId = null }) {
  return {
    type: "reply_captured",
    reply_id: replyIdOf(account, message),
    account,
    generation,
    chat: message.key.remoteJid,
    kind,
    ...(messageId ? { message_id: messageId } : {}),
  };
}

/** `reply_captured` events for a `messages.upsert`: one per inbound message. */
export function messagesUpsertToEvents(upsert, { account, generation, kind = "text", accept }) {
  return inboundMessages(upsert, accept).map((m) => replyCapturedEvent(m, { account, generation, kind }));
}

/**
 * The `transmit_failed` event for an error thrown by a send through socket `effect.attempt`.
 * `wroteBytes`: whether the send was begun at all. Baileys throws 428 "Connection Closed"
 * before writing when the socket is already gone, so that is not I/O either.
 */
export function sendErrorToEvent(effect, err, { wroteBytes }) {
  const status = err?.output?.statusCode;
  return {
    type: "transmit_failed",
    reply_id: effect.reply_id,
    generation: effect.generation,
    attempt: effect.attempt,
    io_started: Boolean(wroteBytes) && status !== CONNECTION_CLOSED,
    error: String(err?.message ?? err),
  };
}

/** The `transmit_acked` event for a send through socket `effect.attempt` that completed. */
export function sendAckEvent(effect) {
  return { type: "transmit_acked", reply_id: effect.reply_id, generation: effect.generation, attempt: effect.attempt };
}

/** A message id as Baileys makes them (`generateMessageID`): "3EB0" and 36 hex digits. */
export function baileysMessageId() {
  return "3EB0" + randomBytes(18).toString("hex").toUpperCase();
}

/** An error shaped like Baileys' Boom (as `sock.end` takes): `output.statusCode` is `status`. */
export function boom(status, message) {
  const err = new Error(`heirline: ${message}`);
  err.isBoom = true;
  err.output = { statusCode: status ?? undefined, payload: { message } };
  return err;
}

/** The default send: text replies as `sendMessage(chat, { text }, { messageId })`. */
export async function sendText(sock, effect) {
  if (effect.kind !== "text") {
    throw boom(
      CONNECTION_CLOSED,
      `no default send for kind "${effect.kind}": pass options.send to attachBaileys`,
    );
  }
  return sock.sendMessage(effect.chat, { text: effect.payload }, { messageId: effect.message_id });
}

// Node's setTimeout takes at most 2^31 - 1 ms; a later deadline is reached in steps.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Attach the heirline engine to Baileys: one gateway serves every account of the engine.
 * heirline decides when a socket is opened (`open_socket`, one Baileys socket per attempt,
 * never reused), so the gateway takes a socket factory rather than a socket.
 *
 * ```js
 * const gateway = attachBaileys(engine, {
 *   makeSocket: async ({ account }) => makeWASocket({ auth: (await auth(account)).state }),
 *   onMessage: (message, reply) => reply.ready(`you said: ${textOf(message)}`),
 *   onEffect: (effect) => { if (effect.type === "log") console.log(effect.message); },
 * });
 * await gateway.start("main");
 * ```
 * @param {import("./index.mjs").HeirlineEngine} engine an engine with clock "host"
 * @param {import("./baileys.d.ts").AttachBaileysOptions} options
 * @returns {BaileysGateway}
 */
export function attachBaileys(engine, options) {
  return new BaileysGateway(engine, options);
}

export class BaileysGateway {
  /**
   * @param {import("./index.mjs").HeirlineEngine} engine
   * @param {import("./baileys.d.ts").AttachBaileysOptions} options
   */
  constructor(engine, options) {
    if (!engine || typeof engine.send !== "function") {
      throw new TypeError("attachBaileys: the first argument must be a HeirlineEngine");
    }
    if (engine.clock !== "host") {
      throw new TypeError('attachBaileys: the engine must use clock "host" (the gateway keeps the time)');
    }
    if (typeof options?.makeSocket !== "function") {
      throw new TypeError(
        "attachBaileys: options.makeSocket({ account, generation, attempt }) must make a Baileys socket",
      );
    }
    const perSecond = options.activityPerSecond ?? ACTIVITY_PER_SECOND;
    if (!(perSecond > 0)) {
      throw new TypeError(`attachBaileys: options.activityPerSecond must be > 0, got ${perSecond}`);
    }
    this.engine = engine;
    this._makeSocket = options.makeSocket;
    this._now = options.now ?? monotonicClock();
    this._send = options.send ?? sendText;
    this._accept = options.accept ?? isInboundMessage;
    this._kind = options.kind ?? "text";
    this._messageId = options.messageId ?? baileysMessageId;
    this._onMessage = options.onMessage ?? (() => {});
    this._onEffect = options.onEffect ?? (() => {});
    // A gateway keeps running through a failed socket factory or a dead engine: by default
    // the error is printed, not thrown.
    this._onError = options.onError ?? ((err) => console.error("heirline/baileys:", err));
    this._activity = rateLimit(1000 / perSecond);
    /** @type {Map<string, number>} the registered generation of each account */
    this._generations = new Map();
    /** @type {Map<string, Binding>} every socket not yet closed, by `<account>/<attempt>` */
    this._sockets = new Map();
    /** @type {Map<string, ReturnType<typeof setTimeout>>} pending timers by key */
    this._timers = new Map();
    /** @type {Map<string, object>} inbound message of each reply not yet ended */
    this._inbound = new Map();
    /** @type {Set<string>} PN<->LID pairs already reported */
    this._mappings = new Set();
    this._queue = Promise.resolve();
    this._closed = false;
    /** @type {Promise<void> | null} */
    this._closing = null;
  }

  /** Start (or restart) `account`: heirline opens its socket. */
  start(account) {
    return this.feed({ type: "start", account });
  }

  /** Stop `account`'s current controller (heirline closes its socket). */
  stop(account, reason = "owner") {
    const generation = this._generations.get(account);
    if (generation === undefined) {
      return Promise.reject(new Error(`heirline/baileys: account ${JSON.stringify(account)} is not running`));
    }
    return this.feed({ type: "stop", account, generation, reason });
  }

  /** The generation of `account`'s current controller, if it has one. */
  generation(account) {
    return this._generations.get(account);
  }

  /** The Baileys socket `attempt` of `account`, while it is not closed. */
  socket(account, attempt) {
    return this._sockets.get(socketKey(account, attempt))?.sock;
  }

  /** The reply's text is ready: heirline sends it through a socket with the same identity. */
  ready(replyId, payload) {
    return this.feed({ type: "reply_ready", reply_id: replyId, payload });
  }

  /**
   * Feed one event to the engine at the gateway's time and carry out its effects, in order.
   * Events are fed one at a time, in the order of the calls. Resolves with the effects.
   */
  feed(event) {
    if (this._closed) return Promise.reject(new Error("heirline/baileys: the gateway is closed"));
    const step = this._queue.then(() => this._step(event));
    this._queue = step.catch(() => {});
    return step;
  }

  /**
   * Close the gateway. By default it first shuts the engine down (`shutdown` with `reason`):
   * every reply still open ends once (`reply_failed`, to `onEffect`) and every socket is
   * closed as the engine says; then the timers stop and any socket left is ended. With
   * `{ shutdown: false }` the engine is left as it is. Close the engine yourself afterwards.
   * @param {{shutdown?: boolean, reason?: string}} [options]
   */
  close({ shutdown = true, reason = "gateway closed" } = {}) {
    if (this._closing) return this._closing;
    this._closed = true; // nothing more is fed, and facts from the sockets are dropped
    this._closing = (async () => {
      await this._queue;
      if (shutdown) {
        try {
          await this._step({ type: "shutdown", reason });
        } catch (err) {
          this._onError(err);
        }
      }
      for (const timer of this._timers.values()) clearTimeout(timer);
      this._timers.clear();
      for (const binding of this._sockets.values()) {
        binding.detach();
        binding.sock?.end?.(undefined);
      }
      this._sockets.clear();
    })();
    return this._closing;
  }

  /** Feed an event that no caller waits for: errors go to onError. */
  _report(event) {
    if (this._closed) return undefined;
    return this.feed(event).catch((err) => this._onError(err));
  }

  async _step(event) {
    const effects = await this.engine.send(event, this._now());
    for (const effect of effects) {
      await this._carryOut(effect);
      try {
        this._onEffect(effect);
      } catch (err) {
        this._onError(err);
      }
    }
    return effects;
  }

  async _carryOut(effect) {
    switch (effect.type) {
      case "open_socket":
        return this._open(effect);
      case "close_socket":
        // 499: the engine's watchdog saw nothing on this socket for too long.
        this._binding(effect)?.sock.end(boom(effect.status, effect.reason));
        return undefined;
      case "registered":
        this._generations.set(effect.account, effect.generation);
        return undefined;
      case "unregistered":
        if (this._generations.get(effect.account) === effect.generation) {
          this._generations.delete(effect.account);
        }
        return undefined;
      case "transmit":
        this._transmit(effect); // its outcome is reported as an event when the send settles
        return undefined;
      case "start_timer":
        this._startTimer(effect.timer, effect.deadline_ms);
        return undefined;
      case "cancel_timer":
        clearTimeout(this._timers.get(effect.timer));
        this._timers.delete(effect.timer);
        return undefined;
      case "reply_delivered":
      case "reply_failed":
        this._inbound.delete(effect.reply_id);
        return undefined;
      default:
        return undefined; // log, rejected, register_request, and types added later: for onEffect
    }
  }

  _binding({ account, attempt }) {
    return this._sockets.get(socketKey(account, attempt));
  }

  /** Socket `fields.attempt` closed: report it, and stop listening to it. */
  _closedSocket(binding, event) {
    const key = socketKey(binding.fields.account, binding.fields.attempt);
    if (this._sockets.get(key) === binding) this._sockets.delete(key);
    binding.detach();
    this._activity.forget(`${key}/`);
    this._report(event);
  }

  async _open(effect) {
    const fields = socketFields(effect);
    let sock;
    try {
      sock = await this._makeSocket({ ...fields });
    } catch (err) {
      this._onError(err);
      this._report({ type: "socket_closed", ...fields, status: null });
      return;
    }
    if (this._closed) {
      sock?.end?.(undefined); // made while the gateway closed: nobody will use it
      return;
    }
    this._sockets.set(socketKey(fields.account, fields.attempt), new Binding(sock, fields, this));
  }

  async _transmit(effect) {
    const binding = this._binding(effect);
    const inbound = this._inbound.get(effect.reply_id);
    let wroteBytes = false;
    try {
      if (!binding?.open) {
        throw boom(CONNECTION_CLOSED, `socket ${effect.attempt} of generation ${effect.generation} is not open`);
      }
      wroteBytes = true;
      await this._send(binding.sock, effect, inbound);
    } catch (err) {
      this._report(sendErrorToEvent(effect, err, { wroteBytes }));
      return;
    }
    this._report(sendAckEvent(effect));
  }

  _startTimer(key, deadline) {
    clearTimeout(this._timers.get(key));
    const arm = () => {
      const delay = deadline - this._now();
      if (delay > 0) {
        this._timers.set(key, setTimeout(arm, Math.min(delay, MAX_TIMEOUT_MS)));
      } else {
        this._timers.delete(key);
        this._report({ type: "timer_fired", timer: key });
      }
    };
    arm();
  }

  /** Socket activity of `kind`, at most `activityPerSecond` facts per socket and kind. */
  _active(binding, kind) {
    if (this._closed || !binding.open) return; // before the open, the engine has no use for it
    const { account, attempt } = binding.fields;
    if (!this._activity.allow(`${socketKey(account, attempt)}/${kind}`, this._now())) return;
    this._report(activityEvent(binding.fields, kind));
  }

  _captured(binding, message) {
    if (this._closed) return;
    const messageId = this._messageId();
    const event = replyCapturedEvent(message, { ...binding.fields, kind: this._kind, messageId });
    const replyId = event.reply_id;
    this.feed(event)
      .then((effects) => {
        // Not taken (e.g. Baileys delivered the same message again): nothing to answer.
        if (effects.some((e) => e.type === "rejected")) return undefined;
        this._inbound.set(replyId, message);
        const reply = {
          replyId,
          messageId,
          account: event.account,
          generation: event.generation,
          ready: (payload) => this.ready(replyId, payload),
        };
        return this._onMessage(message, reply);
      })
      .catch((err) => this._onError(err));
  }

  _learned(me) {
    if (!me?.id || !me?.lid) return;
    const pair = `${me.id} ${me.lid}`;
    if (this._mappings.has(pair)) return;
    this._mappings.add(pair);
    this._report({ type: "mapping_learned", pn: me.id, lid: me.lid });
  }
}

/** The key of socket `attempt` of `account` (attempt numbers are unique per account). */
function socketKey(account, attempt) {
  return `${account}/${attempt}`;
}

/** One Baileys socket (one attempt), subscribed to the events the engine needs. */
class Binding {
  constructor(sock, fields, gateway) {
    this.sock = sock;
    this.fields = fields;
    this.open = false;
    /** the self identity from the latest creds.update (Baileys sends it before "open") */
    this.me = undefined;
    const onConnection = (update) => {
      if (update.connection === "open") this.open = true;
      if (update.connection === "close") this.open = false;
      const me = this.me ?? sock.user ?? sock.authState?.creds?.me;
      for (const event of connectionUpdateToEvents(update, { ...this.fields, me })) {
        if (event.type === "socket_closed") gateway._closedSocket(this, event);
        else gateway._report(event);
      }
    };
    const onCreds = (creds) => {
      if (!creds?.me) return;
      this.me = { ...this.me, ...creds.me };
      gateway._learned(this.me);
    };
    const onUpsert = (upsert) => {
      // Messages arrived on this socket (new or history): the channel is alive.
      if (Array.isArray(upsert?.messages) && upsert.messages.length) gateway._active(this, "inbound");
      for (const message of inboundMessages(upsert, gateway._accept)) gateway._captured(this, message);
    };
    // Baileys' websocket emits "frame" for every frame it decodes (keepalive answers too).
    const onFrame = () => gateway._active(this, "frame");
    const listeners = [
      ["connection.update", onConnection],
      ["creds.update", onCreds],
      ["messages.upsert", onUpsert],
    ];
    for (const [name, listener] of listeners) sock.ev.on(name, listener);
    const ws = typeof sock.ws?.on === "function" ? sock.ws : null;
    ws?.on("frame", onFrame);
    this.detach = () => {
      for (const [name, listener] of listeners) sock.ev.off(name, listener);
      ws?.off?.("frame", onFrame);
    };
  }
}
