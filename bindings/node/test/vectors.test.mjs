// Every conformance vector, replayed through the real Python server by the Node client.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { HeirlineEngine, PROTOCOL } from "../index.mjs";
import { COMMAND, VECTOR_DIR } from "./support/helpers.mjs";

const files = readdirSync(VECTOR_DIR).filter((f) => f.endsWith(".jsonl")).sort();

test("the conformance vectors are there", () => {
  assert.ok(files.includes("incident.jsonl"));
  assert.ok(files.length >= 12);
});

for (const file of files) {
  test(`vector ${file}`, async () => {
    const lines = readFileSync(path.join(VECTOR_DIR, file), "utf8").split("\n");
    assert.equal(lines.pop(), "");
    const hello = JSON.parse(lines[0]).hello;
    const engine = new HeirlineEngine({
      command: COMMAND,
      seed: hello.seed,
      clock: hello.clock ?? "host",
      config: hello.config,
      mapping: hello.mapping,
    });
    const serverHello = await engine.ready;
    assert.equal(serverHello.protocol, PROTOCOL);
    // Pipelined: every input line is written before any answer is awaited.
    const answers = [];
    for (let i = 1; i < lines.length; i += 2) answers.push(engine.request(lines[i]));
    const got = await Promise.all(answers);
    for (let i = 1, n = 0; i < lines.length; i += 2, n++) {
      assert.deepEqual(got[n], JSON.parse(lines[i + 1]), `${file} line ${i + 1}: ${lines[i]}`);
    }
    const exit = await engine.close();
    assert.equal(exit.code, 0);
    assert.match(exit.stderr, /heirline serve: \d+ lines/);
  });
}
