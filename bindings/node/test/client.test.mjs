import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  DEFAULT_TIMEOUT_MS,
  HeirlineEngine,
  HeirlineProtocolError,
  HeirlineStartError,
  HeirlineTimeoutError,
  PROTOCOL,
  resolveCommand,
  DEFAULT_COMMAND,
} from "../index.mjs";
import { COMMAND, test } from "./support/helpers.mjs";

const INDEX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../index.mjs");
const GROUP = "120363000000000001@g.us";
const PN = "4915123456789@s.whatsapp.net";

/** A fake server in Node: `script` runs with `lines` (the client's lines) and `reply(obj)`. */
function fakeServer(script) {
  const source = `
    const readline = require("node:readline");
    const lines = readline.createInterface({ input: process.stdin });
    const reply = (obj) => process.stdout.write(JSON.stringify(obj) + "\\n");
    const HELLO = { hello: { protocol: 2, heirline: "fake", clock: "host" } };
    ${script}
  `;
  return [process.execPath, "-e", source];
}

/** A server that never answers anything, and ignores EOF. */
const SILENT = fakeServer("lines.on('line', () => {}); setInterval(() => {}, 1e6);");

test("resolveCommand: option, then HEIRLINE_CMD, then the default", () => {
  assert.deepEqual(resolveCommand(["x", "y"], { HEIRLINE_CMD: "a b" }), ["x", "y"]);
  assert.deepEqual(resolveCommand(undefined, { HEIRLINE_CMD: "py -m heirline.adapters.stdio" }), [
    "py",
    "-m",
    "heirline.adapters.stdio",
  ]);
  assert.deepEqual(resolveCommand(undefined, { HEIRLINE_CMD: '["my py", "-m", "m"]' }), ["my py", "-m", "m"]);
  assert.throws(() => resolveCommand(undefined, { HEIRLINE_CMD: "[1]" }), TypeError);
  assert.deepEqual(resolveCommand(undefined, {}), [...DEFAULT_COMMAND]);
  assert.deepEqual(DEFAULT_COMMAND, ["heirline", "serve", "--stdio"]);
});

test("send resolves effects; bad input rejects with the line and code; the session goes on", async () => {
  const engine = await HeirlineEngine.start({ command: COMMAND, seed: 7, config: { health_timer: false } });
  assert.equal(PROTOCOL, 2);
  const effects = await engine.send({ type: "start", account: "acct" }, 1000);
  assert.deepEqual(
    effects.map((e) => e.type),
    ["registered", "open_socket", "log"],
  );
  assert.deepEqual(effects[1], { type: "open_socket", account: "acct", generation: 1, attempt: 1 });
  await assert.rejects(engine.send({ type: "teleport" }, 1001), (err) => {
    assert.ok(err instanceof HeirlineProtocolError);
    assert.equal(err.code, "unknown_event_type");
    assert.equal(err.line, 3);
    return true;
  });
  await assert.rejects(engine.send({ type: "health_check" }, 5), /now_backwards/);
  const rejected = await engine.send({ type: "stop", account: "acct", generation: 9 }, 1002);
  assert.equal(rejected[0].type, "rejected");
  assert.equal(rejected[0].code, "unknown_controller");
  // Many requests in flight at once come back in order.
  const many = await Promise.all(
    Array.from({ length: 200 }, (_, i) => engine.send({ type: "health_check" }, 2000 + i)),
  );
  assert.equal(many.length, 200);
  const exit = await engine.close();
  assert.equal(exit.code, 0);
  assert.match(exit.stderr, /205 lines, 202 events, 2 errors, 1 rejected/);
  // EOF shut the engine down: the connecting socket 1 is closed, the account unregistered.
  assert.deepEqual(
    exit.effects.map((e) => e.type),
    ["close_socket", "log", "unregistered"],
  );
  assert.equal(exit.effects[0].attempt, 1);
  await assert.rejects(engine.send({ type: "health_check" }, 3000), /closed/);
});

test("close() ends every open reply exactly once and resolves with the shutdown's effects", async (t) => {
  const engine = await HeirlineEngine.start({ command: COMMAND, seed: 7, config: { health_timer: false } });
  t.after(() => engine.kill());
  let now = 0;
  const send = (event) => engine.send(event, (now += 10));
  await send({ type: "start", account: "acct" });
  await send({ type: "socket_opened", account: "acct", generation: 1, attempt: 1, pn: PN });
  for (const reply_id of ["pending", "in_flight", "delivered"]) {
    await send({ type: "reply_captured", reply_id, account: "acct", generation: 1, chat: GROUP });
  }
  const sent = await send({ type: "reply_ready", reply_id: "in_flight", payload: "x" });
  assert.equal(sent.find((e) => e.type === "transmit").attempt, 1);
  await send({ type: "reply_ready", reply_id: "delivered", payload: "x" });
  await send({ type: "transmit_acked", reply_id: "delivered", generation: 1, attempt: 1 });

  const { code, end, effects, error } = await engine.close();
  assert.equal(code, 0);
  assert.equal(error, null);
  assert.deepEqual([end.id, end.shutdown], [null, true]);
  assert.deepEqual(
    effects.filter((e) => e.type === "reply_failed"),
    [
      { type: "reply_failed", reply_id: "pending", outcome: "failed", reason: "end of input before the reply was sent" },
      {
        type: "reply_failed",
        reply_id: "in_flight",
        outcome: "unknown",
        reason: "end of input; a transmission may have reached the receiver without an ack",
      },
    ],
  );
  assert.ok(effects.some((e) => e.type === "close_socket" && e.attempt === 1 && e.reason === "end of input"));
  const again = await engine.close(); // close() is idempotent: the same end, nothing ended twice
  assert.deepEqual([again.code, again.end, again.effects], [code, end, effects]);
});

test("after the host's own shutdown, close() has nothing more to end", async (t) => {
  const engine = await HeirlineEngine.start({ command: COMMAND, seed: 7, config: { health_timer: false } });
  t.after(() => engine.kill());
  await engine.send({ type: "start", account: "acct" }, 1);
  await engine.send({ type: "reply_captured", reply_id: "r1", account: "acct", generation: 1, chat: GROUP }, 2);
  const bye = await engine.send({ type: "shutdown", reason: "deploy" }, 3);
  assert.deepEqual(bye.find((e) => e.type === "reply_failed"), {
    type: "reply_failed",
    reply_id: "r1",
    outcome: "failed",
    reason: "deploy before the reply was sent",
  });
  const [after] = await engine.send({ type: "health_check" }, 4);
  assert.equal(after.code, "shut_down");
  const exit = await engine.close();
  assert.deepEqual([exit.code, exit.end, exit.effects, exit.error], [0, null, [], null]);
});

test("a server that never answers: the request rejects within timeoutMs and the server is killed", async () => {
  assert.equal(DEFAULT_TIMEOUT_MS, 30_000);
  const started = Date.now();
  const engine = new HeirlineEngine({ command: SILENT, timeoutMs: 300 });
  await assert.rejects(engine.ready, (err) => {
    assert.ok(err instanceof HeirlineTimeoutError, String(err));
    assert.equal(err.code, "timeout");
    assert.equal(err.timeoutMs, 300);
    assert.match(err.message, /gave no answer within 300 ms; it was ended/);
    return true;
  });
  const exit = await engine.close();
  assert.equal(exit.signal, "SIGKILL");
  assert.ok(exit.error instanceof HeirlineTimeoutError);
  await assert.rejects(engine.send({ type: "health_check" }, 1), /closed|timeout|gave no answer/);
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
});

test("requests in flight when the answers stop all reject with the timeout", async () => {
  // Answers the hello and the first event, then nothing.
  const engine = new HeirlineEngine({
    command: fakeServer(`let n = 0; lines.on("line", () => { if (n++ < 2) reply(n === 1 ? HELLO : { id: 1, effects: [] }); });
      setInterval(() => {}, 1e6);`),
    timeoutMs: 300,
  });
  await engine.ready;
  const results = await Promise.allSettled([1, 2, 3].map((i) => engine.send({ type: "health_check" }, i)));
  assert.equal(results[0].status, "fulfilled");
  assert.deepEqual(
    results.slice(1).map((r) => r.reason instanceof HeirlineTimeoutError),
    [true, true],
  );
  assert.equal((await engine.close()).signal, "SIGKILL");
});

test("a server that does not exit after EOF is killed after timeoutMs", async () => {
  const engine = new HeirlineEngine({
    command: fakeServer("lines.once('line', () => reply(HELLO)); setInterval(() => {}, 1e6);"),
    timeoutMs: 300,
  });
  await engine.ready;
  const started = Date.now();
  const exit = await engine.close();
  assert.equal(exit.signal, "SIGKILL");
  assert.equal(exit.end, null);
  assert.ok(exit.error instanceof HeirlineTimeoutError, String(exit.error));
  assert.ok(Date.now() - started < 10_000);
});

test("timeoutMs must be a positive integer or Infinity", () => {
  for (const bad of [0, -1, 1.5, NaN, "10"]) {
    assert.throws(() => new HeirlineEngine({ command: SILENT, timeoutMs: bad }), /timeoutMs must be/);
  }
});

test("an idle engine does not keep Node running; the server then gets EOF and exits", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "heirline-"));
  const pidFile = path.join(dir, "server.pid");
  const script = `
    import { HeirlineEngine } from ${JSON.stringify(INDEX)};
    const engine = await HeirlineEngine.start({ command: ${JSON.stringify(pidCommand(pidFile))} });
    await engine.send({ type: "start", account: "a" }, 1);
    console.log("done");  // no close(): Node must exit anyway
  `;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(out.trim(), "done");
  assert.ok(existsSync(pidFile));
  return waitGone(Number(readFileSync(pidFile, "utf8")));
});

/** The server, run so that it writes its process id to `file` first. */
function pidCommand(file) {
  const python = COMMAND[0];
  const code =
    "import os, sys, runpy; open(sys.argv[1], 'w').write(str(os.getpid())); " +
    "sys.argv = sys.argv[:1]; runpy.run_module('heirline.adapters.stdio', run_name='__main__')";
  return [python, "-c", code, file];
}

/** Resolves once process `pid` is gone (rejects after 10 s). */
async function waitGone(pid) {
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if (err.code === "ESRCH") return;
      throw err;
    }
    if (Date.now() > end) throw new Error(`server ${pid} still runs`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test("monotonic clock: the server stamps the time", async () => {
  const engine = await HeirlineEngine.start({ command: COMMAND, seed: 1, clock: "monotonic" });
  const effects = await engine.send({ type: "start", account: "a" });
  assert.equal(effects[0].type, "registered");
  await engine.close();
});

test("a bad hello rejects ready", async () => {
  const engine = new HeirlineEngine({ command: COMMAND, seed: 1, config: { nope: 1 } });
  await assert.rejects(engine.ready, (err) => err instanceof HeirlineProtocolError && err.code === "bad_hello");
  await engine.close();
});

/** The fix every start error names: install the Python package, or say where it is. */
function assertNamesTheFix(err) {
  assert.ok(err instanceof HeirlineStartError, String(err));
  assert.match(err.message, /python -m pip install \./);
  assert.match(err.message, /options\.command or HEIRLINE_CMD/);
  assert.match(err.message, /heirline\.adapters\.stdio/);
}

/** Child processes this test process has running (a closed one's handle goes a tick later). */
async function children() {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  return process.getActiveResourcesInfo().filter((r) => r === "ProcessWrap").length;
}

test("start() that fails ends the server it spawned (nothing keeps Node running)", async () => {
  const before = await children();
  const pidFile = path.join(mkdtempSync(path.join(tmpdir(), "heirline-")), "server.pid");
  await assert.rejects(
    HeirlineEngine.start({ command: pidCommand(pidFile), seed: 1, config: { nope: 1 } }),
    (err) => err instanceof HeirlineProtocolError && err.code === "bad_hello",
  );
  await waitGone(Number(readFileSync(pidFile, "utf8"))); // ended, not just forgotten
  assert.equal(await children(), before);
  await assert.rejects(HeirlineEngine.start({ command: ["/nonexistent/heirline-server"] }), HeirlineStartError);
  assert.equal(await children(), before);
});

test("a server command that does not exist rejects with the fix, not a raw ENOENT", async () => {
  const engine = new HeirlineEngine({ command: ["/nonexistent/heirline-server"] });
  await assert.rejects(engine.ready, (err) => {
    assertNamesTheFix(err);
    assert.equal(err.code, "ENOENT");
    assert.deepEqual(err.command, ["/nonexistent/heirline-server"]);
    assert.match(
      err.message,
      /^heirline: cannot start the engine server: "\/nonexistent\/heirline-server" was not found\./,
    );
    assert.equal(err.cause.code, "ENOENT");
    return true;
  });
  // Later calls say the same, and close() still resolves.
  await assert.rejects(engine.send({ type: "health_check" }, 1), HeirlineStartError);
  await engine.close();
});

test("no heirline on PATH: the default command rejects with the fix", async () => {
  const engine = new HeirlineEngine({ env: { PATH: "/nonexistent" } });
  await assert.rejects(engine.ready, (err) => {
    assertNamesTheFix(err);
    assert.deepEqual(err.command, [...DEFAULT_COMMAND]);
    assert.match(err.message, /"heirline" was not found/);
    return true;
  });
});

test("a server command that is not executable rejects with the fix", async () => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "heirline-")), "heirline");
  writeFileSync(file, "#!/bin/sh\n");
  chmodSync(file, 0o644);
  const engine = new HeirlineEngine({ command: [file, "serve", "--stdio"] });
  await assert.rejects(engine.ready, (err) => {
    assertNamesTheFix(err);
    assert.equal(err.code, "EACCES");
    assert.match(err.message, /could not be run \(EACCES\)/);
    return true;
  });
});

test("a server that starts and exits at once rejects ready with its stderr", async () => {
  const engine = new HeirlineEngine({ command: [process.execPath, "-e", "console.error('boom'); process.exit(3)"] });
  await assert.rejects(engine.ready, /heirline server exited \(code 3, signal null\): boom/);
  assert.equal((await engine.close()).code, 3);
});
