// `npm pack` holds everything the README uses: the files it names, the modules its code
// imports, and whatever those import in turn. Nothing from test/.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { builtinModules } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "./support/helpers.mjs";

const PACKAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(path.join(PACKAGE, "package.json"), "utf8"));
const readme = readFileSync(path.join(PACKAGE, "README.md"), "utf8");

const packed = (() => {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: PACKAGE,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 60_000,
  });
  const [report] = JSON.parse(out);
  return new Set(report.files.map((f) => f.path));
})();

/** What an import specifier in the package's own code may name outside the package. */
const EXTERNAL = new Set(["baileys"]); // the example's dependency, loaded only when run

/** The subpath a bare "heirline[/x]" specifier exports, or null for another package. */
function exportTarget(specifier) {
  if (specifier !== pkg.name && !specifier.startsWith(`${pkg.name}/`)) return null;
  const key = "." + specifier.slice(pkg.name.length);
  const entry = pkg.exports[key];
  assert.ok(entry, `${specifier} is not in package.json "exports"`);
  return typeof entry === "string" ? [entry] : Object.values(entry);
}

const normal = (p) => path.posix.normalize(p.replace(/^\.\//, ""));

test("the README's relative files are in the package", () => {
  const named = new Set();
  // `examples/baileys.mjs`, `index.d.ts`, [text](baileys.d.ts), ... (not URLs, not anchors)
  for (const m of readme.matchAll(/`((?:\.\/)?[\w./-]+\.(?:mjs|js|d\.ts|json|md))`|\]\((?!https?:|#)([^)\s]+)\)/g)) {
    named.add(normal(m[1] ?? m[2]));
  }
  assert.ok(named.has("examples/baileys.mjs"), [...named].join(", "));
  for (const file of named) assert.ok(packed.has(file), `README uses ${file}, missing from npm pack: ${[...packed]}`);
});

test("every module the README imports is exported and packed", () => {
  const specifiers = [...readme.matchAll(/from "([^"]+)"/g)].map((m) => m[1]);
  assert.ok(specifiers.includes("heirline") && specifiers.includes("heirline/baileys"), specifiers.join(", "));
  for (const specifier of specifiers) {
    const targets = exportTarget(specifier);
    if (targets === null) {
      assert.ok(EXTERNAL.has(specifier), `README imports ${specifier}, which this package does not provide`);
      continue;
    }
    for (const target of targets) assert.ok(packed.has(normal(target)), `${specifier} -> ${target} not packed`);
  }
});

test("package.json's entry points are packed, and what they import is too", () => {
  const entries = [
    pkg.main,
    pkg.types,
    ...Object.values(pkg.exports).flatMap((e) => (typeof e === "string" ? [e] : Object.values(e))),
  ];
  for (const entry of entries) assert.ok(packed.has(normal(entry)), `${entry} not packed`);
  for (const file of [...packed].filter((f) => /\.(mjs|d\.ts)$/.test(f))) {
    const source = readFileSync(path.join(PACKAGE, file), "utf8");
    for (const m of source.matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)) {
      const specifier = m[1];
      if (specifier.startsWith(".")) {
        const target = path.posix.join(path.posix.dirname(file), specifier);
        assert.ok(packed.has(target), `${file} imports ${specifier}, which is not packed`);
      } else if (specifier.startsWith("node:") || builtinModules.includes(specifier)) {
        continue;
      } else if (exportTarget(specifier) === null) {
        assert.ok(EXTERNAL.has(specifier), `${file} imports ${specifier}, which is not a dependency`);
      }
    }
  }
});

test("the package carries its licence and no tests", () => {
  assert.ok(packed.has("LICENSE"));
  assert.ok(packed.has("README.md"));
  assert.deepEqual(
    [...packed].filter((f) => f.startsWith("test/")),
    [],
  );
});

test("npm test runs the test files only: helpers live in test/support/", () => {
  assert.equal(pkg.scripts.test, "node --test test/*.test.mjs");
  const top = readdirSync(path.join(PACKAGE, "test"), { withFileTypes: true }).filter((e) => e.isFile());
  assert.deepEqual(
    top.filter((e) => !e.name.endsWith(".test.mjs")).map((e) => e.name),
    [],
  );
});
