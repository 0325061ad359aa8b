// Every conformance vector, replayed through the real Python server by the Node client:
// the answers in order, then close() (EOF) and the server's end-of-input line, if any.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { HeirlineEngine, PROTOCOL } from "../index.mjs";
import { COMMAND, VECTOR_DIR, test } from "./support/helpers.mjs";

const files = readdirSync(VECTOR_DIR).filter((f) => f.endsWith(".jsonl")).sort();

/** A vector: the hello, input/answer pairs, and the end-of-input line if the file has one. */
function read(file) {
  const lines = readFileSync(path.join(VECTOR_DIR, file), "utf8").split("\n");
  assert.equal(lines.pop(), "", `${file} ends with a newline`);
  const end = lines.length % 2 === 0 ? JSON.parse(lines.pop()) : null;
  const pairs = [];
  for (let i = 1; i < lines.length; i += 2) pairs.push([lines[i], JSON.parse(lines[i + 1])]);
  return { hello: JSON.parse(lines[0]).hello, pairs, end };
}

test("the conformance vectors are there, protocol 2 and its new stories included", () => {
  for (const name of ["incident", "socket_attempts", "watchdog_closes_silent_socket", "end_of_input"]) {
    assert.ok(files.includes(`${name}.jsonl`), name);
  }
  assert.ok(files.length >= 23);
  assert.equal(PROTOCOL, 2);
  for (const file of files) assert.equal(read(file).hello.protocol, PROTOCOL, file);
});

for (const file of files) {
  test(`vector ${file}`, async (t) => {
    const { hello, pairs, end } = read(file);
    const engine = new HeirlineEngine({
      command: COMMAND,
      seed: hello.seed,
      clock: hello.clock ?? "host",
      config: hello.config,
      mapping: hello.mapping,
    });
    t.after(() => engine.kill());
    const serverHello = await engine.ready;
    assert.equal(serverHello.protocol, PROTOCOL);
    // Pipelined: every input line is written before any answer is awaited.
    const got = await Promise.all(pairs.map(([line]) => engine.request(line)));
    pairs.forEach(([line, expected], n) => assert.deepEqual(got[n], expected, `${file} pair ${n + 1}: ${line}`));
    // EOF: the server shuts the engine down (unless the host did) and says how, last.
    const exit = await engine.close();
    assert.equal(exit.code, 0, exit.stderr);
    assert.deepEqual(exit.end, end);
    assert.deepEqual(exit.effects, end?.effects ?? []);
    assert.equal(exit.error, null);
    assert.match(exit.stderr, new RegExp(`heirline serve: ${pairs.length + 1} lines`));
  });
}
