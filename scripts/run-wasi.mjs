// Runs a wasm32-wasip1 command module in Node's V8 (the engine Envoy embeds):
//   node scripts/run-wasi.mjs MODULE.wasm [ARGS...]
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

const [file, ...args] = argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [file, ...args], env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
const imports = wasi.getImportObject();
// The proxy-wasm host functions the filter crate links (module "env") are never called by
// a command run: stubs that fail loudly if they are.
for (const i of WebAssembly.Module.imports(module)) {
  if (i.kind === "function" && !(imports[i.module] && i.name in imports[i.module])) {
    imports[i.module] ??= {};
    imports[i.module][i.name] = () => {
      throw new Error(`host function ${i.module}.${i.name} called outside Envoy`);
    };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
// The filter crate also exports the reactor's `_initialize` (proxy_wasm::main!), which WASI's
// `start` refuses next to `_start`: hand it the command's exports only.
const { _start, memory } = instance.exports;
exit(wasi.start({ exports: { _start, memory } }));
