// heirline for Node.js: drives `heirline serve --stdio` (docs/protocol.md) from JavaScript.
// Dependency-free. One request in flight or many: answers come back in order, one per line.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

/** The protocol version this client speaks. */
export const PROTOCOL = 2;

/**
 * How long the client waits for the server by default (ms): for each answer while requests
 * are pending, and for the exit after {@link HeirlineEngine#close}. An engine answers in
 * microseconds; a server silent this long is stuck, and is ended rather than waited on.
 */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** The command spawned when none is given: `heirline serve --stdio`. */
export const DEFAULT_COMMAND = Object.freeze(["heirline", "serve", "--stdio"]);

/**
 * The command to spawn: `options.command`, else `HEIRLINE_CMD` (a JSON array, or a
 * space-separated command line), else {@link DEFAULT_COMMAND}.
 * @param {string[] | undefined} command
 * @param {Record<string, string | undefined>} [env]
 * @returns {string[]}
 */
export function resolveCommand(command, env = process.env) {
  if (command && command.length) return [...command];
  const raw = env.HEIRLINE_CMD;
  if (raw && raw.trim()) {
    const text = raw.trim();
    if (text.startsWith("[")) {
      const parsed = JSON.parse(text);
      if (!Array.isArray(parsed) || !parsed.length || !parsed.every((s) => typeof s === "string")) {
        throw new TypeError("HEIRLINE_CMD must be a JSON array of strings");
      }
      return parsed;
    }
    return text.split(/\s+/);
  }
  return [...DEFAULT_COMMAND];
}

/**
 * A clock for {@link HeirlineEngine#send}: integer milliseconds from a monotonic source,
 * never decreasing, so the protocol's `now_backwards` cannot happen. `Date.now()` is a
 * wall clock: NTP and manual changes move it backwards.
 *
 * ```js
 * const clock = monotonicClock();                         // 0, 1, 2, ... ms since now
 * const wall = monotonicClock({ start: Date.now() });     // starts at the wall time, never steps back
 * await engine.send(event, clock());
 * ```
 * @param {{start?: number, source?: () => bigint}} [options] `start`: the first reading
 *   (ms, default 0); `source`: nanoseconds, default `process.hrtime.bigint` (for tests).
 * @returns {() => number}
 */
export function monotonicClock({ start = 0, source = process.hrtime.bigint } = {}) {
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new TypeError(`monotonicClock: start must be a non-negative integer (ms), got ${start}`);
  }
  const origin = source();
  let last = start;
  return () => {
    const now = start + Number((source() - origin) / 1_000_000n);
    if (now > last) last = now; // a source that steps back (it should not) holds the clock still
    return last;
  };
}

/** What to do when the server command cannot be started. */
const START_FIX =
  'Install the heirline Python package so that "heirline" is on PATH (python -m pip install . ' +
  "in a clone of https://github.com/heirline/heirline, then activate that venv), or point " +
  'options.command or HEIRLINE_CMD at it, e.g. ["/path/to/venv/bin/heirline", "serve", "--stdio"] ' +
  'or ["python3", "-m", "heirline.adapters.stdio"].';

/** The server command could not be started (not found, not executable, ...). */
export class HeirlineStartError extends Error {
  /**
   * @param {string[]} command
   * @param {NodeJS.ErrnoException} cause
   */
  constructor(command, cause) {
    const what =
      cause.code === "ENOENT"
        ? `${JSON.stringify(command[0])} was not found`
        : `${JSON.stringify(command[0])} could not be run (${cause.code ?? cause.message})`;
    super(`heirline: cannot start the engine server: ${what}. ${START_FIX}`, { cause });
    this.name = "HeirlineStartError";
    /** @type {string | undefined} */ this.code = cause.code;
    /** @type {string[]} */ this.command = [...command];
  }
}

/**
 * The server did not answer (or, after `close()`, did not exit) within `timeoutMs`. Answers
 * come back in order, so a missing one leaves the session unusable: the server is ended and
 * every pending request rejects with this error.
 */
export class HeirlineTimeoutError extends Error {
  /**
   * @param {string} what what was waited for
   * @param {number} timeoutMs
   */
  constructor(what, timeoutMs) {
    super(`heirline: the engine server gave no ${what} within ${timeoutMs} ms; it was ended`);
    this.name = "HeirlineTimeoutError";
    /** @type {"timeout"} */ this.code = "timeout";
    /** @type {number} */ this.timeoutMs = timeoutMs;
  }
}

/** An error line from the server (`{"error": {"line", "code", "message"}}`). */
export class HeirlineProtocolError extends Error {
  /**
   * @param {{line: number, code: string, message: string}} error
   * @param {unknown} id
   */
  constructor(error, id) {
    super(`heirline: line ${error.line}: ${error.code}: ${error.message}`);
    this.name = "HeirlineProtocolError";
    /** @type {string} */ this.code = error.code;
    /** @type {number} */ this.line = error.line;
    /** @type {unknown} */ this.id = id;
  }
}

/**
 * The heirline engine in a child process.
 *
 * ```js
 * const engine = await HeirlineEngine.start({ seed: 7 });
 * const clock = monotonicClock();
 * const effects = await engine.send({ type: "start", account: "acct" }, clock());
 * const { effects: last } = await engine.close(); // EOF is a shutdown: every open reply ends
 * ```
 *
 * An idle engine (no request waiting for its answer) does not keep Node running; if Node
 * exits without `close()`, the server sees EOF and shuts down on its own, unheard.
 */
export class HeirlineEngine {
  /**
   * Spawn the server and complete the handshake; if that fails, the server is ended and
   * the promise rejects.
   * @param {import("./index.d.ts").HeirlineOptions} [options]
   * @returns {Promise<HeirlineEngine>}
   */
  static async start(options = {}) {
    const engine = new HeirlineEngine(options);
    try {
      await engine.ready;
    } catch (err) {
      await engine.close(); // the caller has no handle to close it: end the server here
      throw err;
    }
    return engine;
  }

  /** @param {import("./index.d.ts").HeirlineOptions} [options] */
  constructor(options = {}) {
    const command = resolveCommand(options.command, options.env ?? process.env);
    const [cmd, ...args] = command;
    this.clock = options.clock ?? "host";
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs === Infinity || (Number.isSafeInteger(timeoutMs) && timeoutMs > 0))) {
      throw new TypeError(`heirline: timeoutMs must be a positive integer (ms) or Infinity, got ${timeoutMs}`);
    }
    /** How long to wait for an answer, or for the exit after close() (ms; Infinity: forever). */
    this.timeoutMs = timeoutMs;
    /** @type {Array<{resolve: (v: any) => void, reject: (e: Error) => void, end?: boolean}>} */
    this._pending = [];
    this._nextId = 1;
    this._closed = false;
    /** @type {Promise<{line: any, error: Error | null}> | null} the end of input, once asked */
    this._ending = null;
    /** @type {Error | null} why the server was ended by the client (a timeout) */
    this._killedFor = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._timer = null;
    /** whether the server is known to be going away (spawn failed, killed): wait for it */
    this._dying = false;
    /** whether the server process has exited and its pipes closed */
    this._exited = false;
    this._stderr = "";
    this._child = spawn(cmd, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
    this._child.stderr.setEncoding("utf8");
    this._child.stderr.on("data", (chunk) => {
      this._stderr = (this._stderr + chunk).slice(-8192);
    });
    /** @type {Error | null} why the server could not be started, once known */
    this._startError = null;
    this._exit = new Promise((resolve) => {
      this._child.on("close", (code, signal) => {
        this._closed = true;
        this._exited = true;
        clearTimeout(this._timer);
        const err =
          this._killedFor ??
          this._startError ??
          new Error(`heirline server exited (code ${code}, signal ${signal}): ${this._stderr.trim()}`);
        for (const p of this._pending.splice(0)) {
          if (p.end) p.resolve(null); // the server ended without a last line (nothing to end)
          else p.reject(err);
        }
        resolve({ code, signal, stderr: this._stderr });
      });
    });
    this._child.on("error", (err) => {
      this._closed = true;
      this._dying = true; // its "close" follows
      clearTimeout(this._timer);
      // spawn failed (ENOENT, EACCES, ...): say which command and how to fix it.
      if (this._child.pid === undefined) this._startError = new HeirlineStartError(command, err);
      for (const p of this._pending.splice(0)) p.reject(this._startError ?? err);
      this._hold();
    });
    this._child.stdin.on("error", () => {}); // reported through "close"
    const lines = createInterface({ input: this._child.stdout, crlfDelay: Infinity });
    lines.on("line", (line) => this._onLine(line));
    /** @type {Record<string, unknown>} */
    const hello = { protocol: PROTOCOL, seed: options.seed ?? 0, clock: this.clock };
    if (options.config) hello.config = options.config;
    if (options.mapping) hello.mapping = options.mapping;
    /** Resolves with the server's hello once the handshake is done. */
    this.ready = this.request({ hello }).then((answer) => {
      if (answer.error) throw new HeirlineProtocolError(answer.error, null);
      if (!answer.hello || answer.hello.protocol !== PROTOCOL) {
        throw new Error(`heirline: unexpected hello answer ${JSON.stringify(answer)}`);
      }
      this.serverVersion = answer.hello.heirline;
      return answer.hello;
    });
  }

  /** Keep Node running while an answer, the end or the exit is awaited, and only then. */
  _hold() {
    const busy = !this._exited && (this._pending.length > 0 || this._ending !== null || this._dying);
    for (const handle of [this._child, this._child.stdin, this._child.stdout, this._child.stderr]) {
      if (busy) handle?.ref?.();
      else handle?.unref?.();
    }
  }

  /** (Re)start the wait for the next line while one is expected. */
  _arm() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this._pending.length === 0 || this._closed || this.timeoutMs === Infinity) return;
    const what = this._pending[0].end ? "end-of-input line" : "answer";
    this._timer = setTimeout(() => this._expire(new HeirlineTimeoutError(what, this.timeoutMs)), this.timeoutMs);
  }

  /** Nothing came in time: every pending request rejects, and the server is ended. */
  _expire(err) {
    this._killedFor = err;
    this._dying = true;
    for (const p of this._pending.splice(0)) p.reject(err);
    this._hold();
    this.kill();
  }

  /** @param {string} line */
  _onLine(line) {
    const pending = this._pending.shift();
    if (pending) {
      try {
        pending.resolve(JSON.parse(line));
      } catch (err) {
        pending.reject(/** @type {Error} */ (err));
      }
    } // else: nothing asked (should not happen): ignore
    this._arm();
    this._hold();
  }

  /**
   * Send one raw protocol object (or a raw line, for tests) and resolve with the answer object.
   * @param {object | string} message
   * @returns {Promise<any>}
   */
  request(message) {
    if (this._closed || this._ending) {
      return Promise.reject(this._startError ?? this._killedFor ?? new Error("heirline: engine is closed"));
    }
    const line = typeof message === "string" ? message : JSON.stringify(message);
    if (line.includes("\n")) return Promise.reject(new Error("heirline: a line may not contain a newline"));
    return new Promise((resolve, reject) => {
      this._pending.push({ resolve, reject });
      if (this._pending.length === 1) this._arm();
      this._hold();
      this._child.stdin.write(line + "\n");
    });
  }

  /**
   * Apply one event at time `now` (ms; omit with clock "monotonic") and resolve with its effects.
   * Rejects with {@link HeirlineProtocolError} if the server refused the line; the engine's own
   * refusals arrive as a `rejected` effect.
   * @param {import("./index.d.ts").Event} event
   * @param {number} [now]
   * @returns {Promise<import("./index.d.ts").Effect[]>}
   */
  async send(event, now) {
    const id = this._nextId++;
    /** @type {Record<string, unknown>} */
    const message = { id, event };
    if (this.clock === "host") {
      if (!Number.isSafeInteger(now)) throw new TypeError("heirline: now must be an integer (ms)");
      message.now = now;
    }
    const answer = await this.request(message);
    if (answer.error) throw new HeirlineProtocolError(answer.error, answer.id);
    return answer.effects;
  }

  /**
   * End the session: EOF, which the server treats as a shutdown ("end of input"), then wait for
   * its exit (at most `timeoutMs`, then it is killed). Resolves with the exit and the server's
   * last line: `effects` ends every reply that was still open (`reply_failed`, outcome `failed`
   * or `unknown`) and closes every socket; it is empty when there was nothing to end (the host
   * sent its own `shutdown` event, or no hello was accepted).
   * @returns {Promise<import("./index.d.ts").CloseResult>}
   */
  async close() {
    if (!this._ending) {
      this._ending = new Promise((resolve) => {
        if (this._closed) {
          resolve({ line: null, error: null });
          return;
        }
        this._pending.push({
          resolve: (line) => resolve({ line, error: null }),
          reject: (error) => resolve({ line: null, error }),
          end: true,
        });
        if (this._pending.length === 1) this._arm();
        this._hold();
        this._child.stdin.end();
      });
    }
    const [exit, { line, error }] = await Promise.all([this._bounded(this._exit), this._ending]);
    let failure = error ?? this._killedFor;
    if (line?.error) failure = new HeirlineProtocolError(line.error, null);
    return { ...exit, end: line, effects: line?.effects ?? [], error: failure };
  }

  /** The exit, killing the server if it has not exited within `timeoutMs`. */
  _bounded(exit) {
    if (this._closed || this.timeoutMs === Infinity) return exit;
    const timer = setTimeout(() => {
      this._killedFor ??= new HeirlineTimeoutError("exit after the end of input", this.timeoutMs);
      this.kill();
    }, this.timeoutMs);
    return exit.finally(() => clearTimeout(timer));
  }

  /**
   * End the server now, without a shutdown: replies still open get no outcome (use
   * {@link HeirlineEngine#close} for that). Pending requests reject.
   * @param {NodeJS.Signals} [signal] default "SIGKILL"
   */
  kill(signal = "SIGKILL") {
    if (!this._closed && this._child.exitCode === null && this._child.signalCode === null) {
      this._dying = true;
      this._hold();
      this._child.kill(signal);
    }
  }
}
