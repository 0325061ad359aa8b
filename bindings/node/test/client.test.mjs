import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  HeirlineEngine,
  HeirlineProtocolError,
  HeirlineStartError,
  resolveCommand,
  DEFAULT_COMMAND,
} from "../index.mjs";
import { COMMAND } from "./support/helpers.mjs";

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
  const effects = await engine.send({ type: "start", account: "acct" }, 1000);
  assert.deepEqual(
    effects.map((e) => e.type),
    ["registered", "open_socket", "log"],
  );
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
  await assert.rejects(engine.send({ type: "health_check" }, 3000), /closed/);
});

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
  await assert.rejects(
    HeirlineEngine.start({ command: COMMAND, seed: 1, config: { nope: 1 } }),
    (err) => err instanceof HeirlineProtocolError && err.code === "bad_hello",
  );
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
