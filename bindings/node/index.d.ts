// Types of the heirline Node.js client; the wire shapes mirror docs/protocol/*.json.

export declare const PROTOCOL: 2;
/** The default `timeoutMs`: 30 s. */
export declare const DEFAULT_TIMEOUT_MS: 30000;
export declare const DEFAULT_COMMAND: readonly string[];
export declare function resolveCommand(
  command?: string[],
  env?: Record<string, string | undefined>,
): string[];

export type Clock = "host" | "monotonic";

export interface MonotonicClockOptions {
  /** The first reading, in ms (default 0); e.g. `Date.now()` to start at the wall time. */
  start?: number;
  /** Nanoseconds from a monotonic source; default `process.hrtime.bigint` (for tests). */
  source?: () => bigint;
}

/**
 * A clock for `send(event, now)`: integer ms, never decreasing (`Date.now()` can step back,
 * and the protocol rejects a `now` that does).
 */
export declare function monotonicClock(options?: MonotonicClockOptions): () => number;

export interface HeirlineOptions {
  /** argv of the server; default HEIRLINE_CMD or ["heirline", "serve", "--stdio"]. */
  command?: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Seeds the engine's jitter (reproducible transcripts). Default 0. */
  seed?: number;
  clock?: Clock;
  /** Engine config overrides (docs/protocol/hello.request.json). */
  config?: Record<string, unknown>;
  /** Initial PN<->LID pairs, e.g. from the auth dir. */
  mapping?: Array<[pn: string, lid: string]>;
  /**
   * How long to wait for each answer while requests are pending, and for the exit after
   * `close()` (ms; default 30000, `Infinity`: forever). On expiry the server is killed and
   * pending requests reject with `HeirlineTimeoutError`.
   */
  timeoutMs?: number;
}

/** A timer key: `health`, `retry/<account>/<generation>`, `watchdog/<account>/<attempt>`,
 * `deadline/<reply_id>`. Treat it as opaque: send back exactly what `start_timer` named. */
export type TimerKey = string;

/** What an `activity` fact saw: a transport frame (feeds the watchdog), or an inbound
 * message handled (feeds the watchdog and the health stale rule). */
export type ActivityKind = "frame" | "inbound";

/** The kinds of operation a reply can be. */
export type ReplyKind = "text" | "media" | "group_metadata" | "read_receipt";

/** The fields that name one socket: every fact about a socket echoes its `open_socket`'s. */
export interface SocketRef {
  account: string;
  generation: number;
  /** The socket's number: unique within the account, only growing (from `open_socket`). */
  attempt: number;
}

export type StartEvent = { type: "start"; account: string };
export type StopEvent = { type: "stop"; account: string; generation: number; reason?: string };
export type SocketOpenedEvent = SocketRef & {
  type: "socket_opened";
  pn?: string | null;
  lid?: string | null;
  e164?: string | null;
};
export type SocketClosedEvent = SocketRef & { type: "socket_closed"; status?: number | null };
export type ActivityEvent = SocketRef & { type: "activity"; kind?: ActivityKind };
export type WatchdogSilenceEvent = SocketRef & { type: "watchdog_silence"; silent_ms: number };
export type TimerFiredEvent = { type: "timer_fired"; timer: TimerKey };
export type HealthCheckEvent = { type: "health_check" };
export type MappingLearnedEvent = { type: "mapping_learned"; pn: string; lid: string };
export type ReplyCapturedEvent = {
  type: "reply_captured";
  reply_id: string;
  account: string;
  generation: number;
  chat: string;
  kind?: ReplyKind;
  deadline_ms?: number | null;
  message_id?: string | null;
};
export type ReplyReadyEvent = { type: "reply_ready"; reply_id: string; payload?: string };
export type TransmitAckedEvent = { type: "transmit_acked"; reply_id: string; generation: number; attempt: number };
export type TransmitFailedEvent = {
  type: "transmit_failed";
  reply_id: string;
  generation: number;
  attempt: number;
  io_started: boolean;
  error?: string;
};
export type RegistryAnswerEvent = {
  type: "registry_answer";
  account: string;
  generation: number;
  granted: boolean;
  reason?: string;
};
export type ShutdownEvent = { type: "shutdown"; reason?: string };

/** Every event of protocol 2 (docs/protocol/event.*.json). */
export type Event =
  | StartEvent
  | StopEvent
  | SocketOpenedEvent
  | SocketClosedEvent
  | ActivityEvent
  | WatchdogSilenceEvent
  | TimerFiredEvent
  | HealthCheckEvent
  | MappingLearnedEvent
  | ReplyCapturedEvent
  | ReplyReadyEvent
  | TransmitAckedEvent
  | TransmitFailedEvent
  | RegistryAnswerEvent
  | ShutdownEvent;

export type OpenSocketEffect = SocketRef & { type: "open_socket" };
export type CloseSocketEffect = SocketRef & {
  type: "close_socket";
  /** The status to report for the close: 499 when the engine's watchdog closes a silent socket. */
  status: number | null;
  reason: string;
};
export type StartTimerEffect = { type: "start_timer"; timer: TimerKey; deadline_ms: number };
export type CancelTimerEffect = { type: "cancel_timer"; timer: TimerKey };
export type RegisteredEffect = {
  type: "registered";
  account: string;
  generation: number;
  predecessor: number | null;
};
export type RegisterRequestEffect = { type: "register_request"; account: string; generation: number };
export type UnregisteredEffect = { type: "unregistered"; account: string; generation: number };
export type TransmitEffect = {
  type: "transmit";
  reply_id: string;
  account: string;
  generation: number;
  /** The socket to send through. */
  attempt: number;
  message_id: string;
  chat: string;
  kind: string;
  payload: string;
  /** This reply's transmissions so far, this one included (1, 2, ...). */
  transmission: number;
};
export type ReplyDeliveredEffect = {
  type: "reply_delivered";
  reply_id: string;
  generation: number;
  via: "origin" | "successor";
};
export type ReplyFailedEffect = {
  type: "reply_failed";
  reply_id: string;
  outcome: "refused" | "failed" | "unknown";
  reason: string;
};
export type LogEffect = {
  type: "log";
  level: string;
  code: string;
  message: string;
  account: string | null;
  generation: number | null;
  fields: Record<string, string | number | boolean | null>;
};
export type RejectedEffect = { type: "rejected"; code: string; message: string };

/** Every effect of protocol 2 (docs/protocol/effect.*.json). */
export type Effect =
  | OpenSocketEffect
  | CloseSocketEffect
  | StartTimerEffect
  | CancelTimerEffect
  | RegisteredEffect
  | RegisterRequestEffect
  | UnregisteredEffect
  | TransmitEffect
  | ReplyDeliveredEffect
  | ReplyFailedEffect
  | LogEffect
  | RejectedEffect;

export interface ServerHello {
  protocol: 2;
  heirline: string;
  clock: Clock;
  /** Only with `serve --journal`: what the journal brought back (docs/durability.md). */
  restored?: { accounts: number; replies: number; ended: number; now: number | null };
  /** Only with `serve --journal`: the restore's effects (deadline timers, outcomes). */
  effects?: Effect[];
}

/** The server's last line at end of input (docs/protocol/end.json). */
export type EndOfInput =
  | { id: null; shutdown: true; effects: Effect[]; now?: number }
  | { id: null; shutdown: true; error: { line: number; code: string; message: string } };

/** What `close()` resolves with. */
export interface CloseResult {
  code: number | null;
  signal: string | null;
  stderr: string;
  /** The server's last line, or null if it wrote none (the host sent its own shutdown,
   * no hello was accepted, the engine broke, or the server was killed). */
  end: EndOfInput | null;
  /** The effects of the shutdown at end of input: every reply still open ends here. */
  effects: Effect[];
  /** Why the end did not go cleanly: the engine failed at the end (HeirlineProtocolError),
   * or the server was killed for not answering or exiting in time (HeirlineTimeoutError). */
  error: Error | null;
}

/** The server command could not be started; the message names the fix. */
export declare class HeirlineStartError extends Error {
  constructor(command: string[], cause: Error & { code?: string });
  /** The spawn error code, e.g. "ENOENT" (not found) or "EACCES" (not executable). */
  readonly code: string | undefined;
  readonly command: string[];
}

/** The server gave no answer (or did not exit after close) within `timeoutMs`; it was ended. */
export declare class HeirlineTimeoutError extends Error {
  constructor(what: string, timeoutMs: number);
  readonly code: "timeout";
  readonly timeoutMs: number;
}

export declare class HeirlineProtocolError extends Error {
  readonly code: string;
  readonly line: number;
  readonly id: unknown;
}

export declare class HeirlineEngine {
  static start(options?: HeirlineOptions): Promise<HeirlineEngine>;
  constructor(options?: HeirlineOptions);
  readonly ready: Promise<ServerHello>;
  readonly clock: Clock;
  readonly timeoutMs: number;
  serverVersion?: string;
  /**
   * Send a raw protocol object or line; resolves with the answer object. Rejects with
   * HeirlineStartError when the server could not be started.
   */
  request(message: object | string): Promise<any>;
  send(event: Event, now?: number): Promise<Effect[]>;
  /**
   * End the session: EOF is a shutdown ("end of input"); resolves once the server exited, with
   * the effects that ended every reply still open.
   */
  close(): Promise<CloseResult>;
  /** End the server at once, without a shutdown (open replies get no outcome). */
  kill(signal?: string): void;
}
