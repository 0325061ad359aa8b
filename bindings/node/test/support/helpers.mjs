import { fileURLToPath } from "node:url";
import path from "node:path";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
export const VECTOR_DIR = path.join(ROOT, "conformance");
/** The server as the tests run it: the Python module, until `heirline serve` is on PATH. */
export const COMMAND = [process.env.PYTHON ?? "python3", "-m", "heirline.adapters.stdio"];
