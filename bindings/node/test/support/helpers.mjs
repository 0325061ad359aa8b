import { test as nodeTest } from "node:test";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
export const VECTOR_DIR = path.join(ROOT, "conformance");
/** The server as the tests run it: the Python module, until `heirline serve` is on PATH. */
export const COMMAND = [process.env.PYTHON ?? "python3", "-m", "heirline.adapters.stdio"];

/** How long any one test may take: a test that cannot get an answer fails, never hangs. */
export const TEST_TIMEOUT_MS = 60_000;

/**
 * `node:test`'s `test`, with a time limit (`TEST_TIMEOUT_MS` unless `options.timeout` says
 * otherwise). The engine client bounds every wait on the server too (`timeoutMs`, default
 * 30 s, then the server is killed), so no test leaves a process that keeps Node running.
 */
export function test(name, options, fn) {
  if (typeof options === "function") [options, fn] = [{}, options];
  return nodeTest(name, { timeout: TEST_TIMEOUT_MS, ...options }, fn);
}
