// Types of the heirline Node.js client; the wire shapes mirror docs/protocol/*.json.

export declare const PROTOCOL: 1;
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
}

export type Event =
  | { type: "start"; account: string }
  | { type: "stop"; account: string; generation: number; reason?: string }
  | { type: "socket_opened"; account: string; generation: number; pn?: string | null; lid?: string | null; e164?: string | null }
  | { type: "socket_closed"; account: string; generation: number; status?: number | null }
  | { type: "watchdog_silence"; account: string; generation: number; silent_ms: number }
  | { type: "timer_fired"; key: string }
  | { type: "health_check" }
  | { type: "mapping_learned"; pn: string; lid: string }
  | {
      type: "reply_captured";
      reply_id: string;
      account: string;
      generation: number;
      chat: string;
      kind?: "text" | "media" | "group_metadata" | "read_receipt";
      deadline_ms?: number | null;
      message_id?: string | null;
    }
  | { type: "reply_ready"; reply_id: string; payload?: string }
  | { type: "transmit_acked"; reply_id: string; generation: number }
  | { type: "transmit_failed"; reply_id: string; generation: number; io_started: boolean; error?: string };

export type Effect =
  | { type: "open_socket"; account: string; generation: number }
  | { type: "close_socket"; account: string; generation: number; status: number | null; reason: string }
  | { type: "start_timer"; key: string; deadline_ms: number }
  | { type: "cancel_timer"; key: string }
  | { type: "registered"; account: string; generation: number; predecessor: number | null }
  | { type: "unregistered"; account: string; generation: number }
  | {
      type: "transmit";
      reply_id: string;
      account: string;
      generation: number;
      message_id: string;
      chat: string;
      kind: string;
      payload: string;
      attempt: number;
    }
  | { type: "reply_delivered"; reply_id: string; generation: number; via: "origin" | "successor" }
  | { type: "reply_failed"; reply_id: string; outcome: "refused" | "failed" | "unknown"; reason: string }
  | {
      type: "log";
      level: string;
      code: string;
      message: string;
      account: string | null;
      generation: number | null;
      fields: Record<string, string | number | boolean | null>;
    }
  | { type: "rejected"; code: string; message: string };

export interface ServerHello {
  protocol: 1;
  heirline: string;
  clock: Clock;
}

/** The server command could not be started; the message names the fix. */
export declare class HeirlineStartError extends Error {
  constructor(command: string[], cause: Error & { code?: string });
  /** The spawn error code, e.g. "ENOENT" (not found) or "EACCES" (not executable). */
  readonly code: string | undefined;
  readonly command: string[];
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
  serverVersion?: string;
  /**
   * Send a raw protocol object or line; resolves with the answer object. Rejects with
   * HeirlineStartError when the server could not be started.
   */
  request(message: object | string): Promise<any>;
  send(event: Event, now?: number): Promise<Effect[]>;
  close(): Promise<{ code: number | null; signal: string | null; stderr: string }>;
}
