// Types of heirline/baileys. The Baileys shapes are structural (only the fields this module
// reads), so a real `makeWASocket(...)` result fits without this package depending on Baileys.

import type {
  ActivityEvent,
  ActivityKind,
  Effect,
  Event,
  HeirlineEngine,
  OpenSocketEffect,
  ReplyCapturedEvent,
  SocketClosedEvent,
  SocketOpenedEvent,
  SocketRef,
  TransmitAckedEvent,
  TransmitEffect,
  TransmitFailedEvent,
} from "./index.d.ts";

/** Baileys' `DisconnectReason.connectionClosed`. */
export declare const CONNECTION_CLOSED: 428;

/** An error as Baileys passes them: a Boom, whose `output.statusCode` is the status. */
export interface BoomLike extends Error {
  output?: { statusCode?: number };
}

/** Baileys' `Contact` as `creds.me` / `sock.user`: `id` is the PN JID, `lid` the LID JID. */
export interface BaileysMe {
  id: string;
  lid?: string;
  name?: string;
}

/** Baileys' `connection.update` payload (`Partial<ConnectionState>`). */
export interface ConnectionUpdate {
  connection?: "open" | "connecting" | "close";
  lastDisconnect?: { error: Error | undefined; date: Date };
  qr?: string;
  isNewLogin?: boolean;
  receivedPendingNotifications?: boolean;
  isOnline?: boolean;
}

/** Baileys' `WAMessageKey`. */
export interface MessageKey {
  remoteJid?: string | null;
  fromMe?: boolean | null;
  id?: string | null;
  participant?: string | null;
}

/** Baileys' `WAMessage`, as far as this module reads it. */
export interface BaileysMessage {
  key: MessageKey;
  message?: {
    conversation?: string | null;
    extendedTextMessage?: { text?: string | null } | null;
    protocolMessage?: unknown;
  } | null;
  pushName?: string | null;
}

/** Baileys' `messages.upsert` payload. */
export interface MessagesUpsert {
  messages: BaileysMessage[];
  type: "notify" | "append";
  requestId?: string;
}

/** Baileys' websocket (`sock.ws`): it emits "frame" for every frame it decodes. */
export interface BaileysWebSocket {
  on(event: "frame", listener: (frame: unknown) => void): unknown;
  off(event: "frame", listener: (frame: unknown) => void): unknown;
}

/** The Baileys events this module listens to, with their payloads. */
export interface BaileysEvents {
  "connection.update": ConnectionUpdate;
  "creds.update": { me?: BaileysMe };
  "messages.upsert": MessagesUpsert;
}

/** What heirline/baileys uses of a Baileys socket (`ReturnType<typeof makeWASocket>`). */
export interface BaileysSocket {
  ev: {
    on<K extends keyof BaileysEvents>(event: K, listener: (arg: BaileysEvents[K]) => void): void;
    off<K extends keyof BaileysEvents>(event: K, listener: (arg: BaileysEvents[K]) => void): void;
  };
  sendMessage(jid: string, content: { text: string }, options?: { messageId?: string }): Promise<unknown>;
  end(error: Error | undefined): void;
  /** Baileys' websocket; its "frame" events are reported as `activity` (optional in fakes). */
  ws?: BaileysWebSocket;
  readonly user?: BaileysMe;
  authState?: { creds?: { me?: BaileysMe } };
}

/** The fields that name a socket in the events about it (`open_socket`'s): account,
 * generation and the socket's attempt number. */
export type SocketFields = SocketRef;

export type { OpenSocketEffect, TransmitEffect };

/** The most `activity` facts of one kind a socket reports per second, by default (4). */
export declare const ACTIVITY_PER_SECOND: 4;

/** A captured reply, as `onMessage` gets it. */
export interface CapturedReply {
  /** `<account>/<inbound message id>`. */
  readonly replyId: string;
  /** The id every transmission of the reply carries (so the receiver never sees it twice). */
  readonly messageId: string;
  readonly account: string;
  /** The controller generation that captured it. */
  readonly generation: number;
  /** The reply's text is ready: heirline sends it through a socket with the same identity. */
  ready(payload: string): Promise<Effect[]>;
}

export interface AttachBaileysOptions<S extends BaileysSocket = BaileysSocket> {
  /** A fresh Baileys socket for each `open_socket` (`makeWASocket({ auth })`); never reuse one.
   * `attempt` is the socket's number: every fact about it carries it back. */
  makeSocket(fields: SocketFields): S | Promise<S>;
  /** An inbound message was captured as a reply: answer it with `reply.ready(text)`. */
  onMessage?(message: BaileysMessage, reply: CapturedReply): unknown;
  /** Every effect, after it was carried out: logs, outcomes (`reply_delivered`, `reply_failed`). */
  onEffect?(effect: Effect): void;
  /** Errors no caller waits for (a socket factory that threw, a dead engine); default console.error. */
  onError?(error: unknown): void;
  /** The engine's clock in ms; default `monotonicClock()`. Must never go backwards. */
  now?(): number;
  /** Which inbound messages get a reply; default {@link isInboundMessage}. */
  accept?(message: BaileysMessage): boolean;
  /** The kind of captured replies; default "text". */
  kind?: ReplyCapturedEvent["kind"];
  /** At most this many `activity` facts per socket and kind per second (default 4). */
  activityPerSecond?: number;
  /** Carry out one transmission; default {@link sendText}. Reject on failure. */
  send?(sock: S, effect: TransmitEffect, inbound: BaileysMessage | undefined): Promise<unknown>;
  /** The message id of a new reply; default {@link baileysMessageId}. */
  messageId?(): string;
}

/** One gateway for every account of an engine; see {@link attachBaileys}. */
export declare class BaileysGateway {
  constructor(engine: HeirlineEngine, options: AttachBaileysOptions);
  readonly engine: HeirlineEngine;
  /** Start (or restart) an account: heirline opens its socket. */
  start(account: string): Promise<Effect[]>;
  /** Stop the account's current controller; rejects if it has none. */
  stop(account: string, reason?: string): Promise<Effect[]>;
  /** The generation of the account's current controller. */
  generation(account: string): number | undefined;
  /** Report that a reply's text is ready. */
  ready(replyId: string, payload: string): Promise<Effect[]>;
  /** The Baileys socket `attempt` of the account, while it is not closed. */
  socket(account: string, attempt: number): BaileysSocket | undefined;
  /** Feed one event at the gateway's time and carry out its effects (serialised, in order). */
  feed(event: Event): Promise<Effect[]>;
  /**
   * Close the gateway: first a `shutdown` of the engine (every open reply ends, reported to
   * `onEffect`; sockets close as the engine says), then stop the timers and end any socket
   * left. `{ shutdown: false }` leaves the engine as it is. Close the engine yourself after.
   */
  close(options?: { shutdown?: boolean; reason?: string }): Promise<void>;
}

/**
 * Attach the heirline engine (clock "host") to Baileys: heirline decides when sockets are
 * opened, closed and which one sends a reply; the gateway carries that out on Baileys.
 */
export declare function attachBaileys<S extends BaileysSocket>(
  engine: HeirlineEngine,
  options: AttachBaileysOptions<S>,
): BaileysGateway;

// The mapping, for gateways that run their own loop.
export declare function statusOf(update: ConnectionUpdate | undefined): number | null;
export declare function identityOf(me: BaileysMe | undefined): { pn: string | null; lid: string | null };
export declare function socketFields(open: OpenSocketEffect): SocketFields;
export declare function connectionUpdateToEvents(
  update: ConnectionUpdate,
  socket: SocketFields & { me?: BaileysMe },
): Array<SocketOpenedEvent | SocketClosedEvent>;
export declare function activityEvent(socket: SocketFields, kind: ActivityKind): ActivityEvent;
/** A rate limit per key: `allow(key, now)` is true at most once per `intervalMs`. */
export declare function rateLimit(intervalMs: number): {
  allow(key: string, now: number): boolean;
  forget(prefix: string): void;
};
export declare function isInboundMessage(message: BaileysMessage | undefined): boolean;
export declare function inboundMessages(
  upsert: MessagesUpsert,
  accept?: (message: BaileysMessage) => boolean,
): BaileysMessage[];
export declare function replyIdOf(account: string, message: BaileysMessage): string;
export declare function replyCapturedEvent(
  message: BaileysMessage,
  options: Pick<SocketFields, "account" | "generation"> & {
    kind?: ReplyCapturedEvent["kind"];
    messageId?: string | null;
  },
): ReplyCapturedEvent;
export declare function messagesUpsertToEvents(
  upsert: MessagesUpsert,
  options: Pick<SocketFields, "account" | "generation"> & {
    kind?: ReplyCapturedEvent["kind"];
    accept?: (message: BaileysMessage) => boolean;
  },
): ReplyCapturedEvent[];
export declare function sendErrorToEvent(
  effect: Pick<TransmitEffect, "reply_id" | "generation" | "attempt">,
  error: unknown,
  options: { wroteBytes: boolean },
): TransmitFailedEvent;
export declare function sendAckEvent(
  effect: Pick<TransmitEffect, "reply_id" | "generation" | "attempt">,
): TransmitAckedEvent;
export declare function baileysMessageId(): string;
export declare function boom(status: number | null, message: string): BoomLike;
export declare function sendText(sock: BaileysSocket, effect: TransmitEffect): Promise<unknown>;
