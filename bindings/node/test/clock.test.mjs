// monotonicClock: integer ms that never go backwards, whatever the source does.
import assert from "node:assert/strict";
import { HeirlineEngine, monotonicClock } from "../index.mjs";
import { COMMAND, test } from "./support/helpers.mjs";

/** A nanosecond source that returns the given readings in turn. */
const readings = (...ns) => {
  const queue = [...ns];
  return () => queue.shift();
};

test("whole milliseconds since the clock was made, from start", () => {
  const clock = monotonicClock({ source: readings(10n, 10n, 1_999_999n + 10n, 2_000_000n + 10n, 5_000_000_010n) });
  assert.deepEqual([clock(), clock(), clock(), clock()], [0, 1, 2, 5000]);
  const wall = monotonicClock({ start: 1_700_000_000_000, source: readings(0n, 0n, 7_000_000n) });
  assert.deepEqual([wall(), wall()], [1_700_000_000_000, 1_700_000_000_007]);
});

test("a source that steps back holds the clock still instead of going back", () => {
  const clock = monotonicClock({ source: readings(0n, 9_000_000n, 3_000_000n, 8_999_999n, 9_000_000n, 12_000_000n) });
  assert.deepEqual([clock(), clock(), clock(), clock(), clock()], [9, 9, 9, 9, 12]);
});

test("the default source is monotonic and gives integers", () => {
  const clock = monotonicClock();
  let last = clock();
  assert.ok(last >= 0 && last < 1000, String(last)); // ms since the line above
  for (let i = 0; i < 100_000; i++) {
    const now = clock();
    assert.ok(Number.isSafeInteger(now) && now >= last, `${now} after ${last}`);
    last = now;
  }
});

test("a bad start is a TypeError naming it", () => {
  for (const start of [-1, 1.5, Number.NaN, "0", 2 ** 53]) {
    assert.throws(() => monotonicClock({ start }), {
      name: "TypeError",
      message: /start must be a non-negative integer/,
    });
  }
});

test("the engine takes every reading of the clock (no now_backwards)", async () => {
  const engine = await HeirlineEngine.start({ command: COMMAND, seed: 3, config: { health_timer: false } });
  const clock = monotonicClock({ start: Date.now() });
  await engine.send({ type: "start", account: "a" }, clock());
  const answers = await Promise.all(Array.from({ length: 300 }, () => engine.send({ type: "health_check" }, clock())));
  assert.equal(answers.length, 300);
  const exit = await engine.close();
  assert.match(exit.stderr, /301 events, 0 errors/);
});
