// Validates Istio manifests against the Istio CRD schemas (the JSON Schemas shipped by the
// npm package @kubernetes-models/istio, which scripts/setup.sh installs into .tools/node).
//   node scripts/validate-istio.mjs FILE...
// Every document must be an Istio kind the package knows; each is checked with the model's
// validate(). Prints one line per document; exits 1 if any fails.
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const nodeModules = join(process.env.MCPTRAIL_TOOLS || join(root, ".tools"), "node", "node_modules");
const load = (p) => import(pathToFileURL(join(nodeModules, p)).href);

const YAML = await load("yaml/dist/index.js");
const groups = [
  "extensions.istio.io/v1alpha1",
  "networking.istio.io/v1",
  "networking.istio.io/v1beta1",
  "networking.istio.io/v1alpha3",
  "security.istio.io/v1",
  "telemetry.istio.io/v1",
];
const models = new Map();
for (const g of groups) {
  const mod = await load(`@kubernetes-models/istio/${g}/index.js`);
  for (const Model of Object.values(mod)) {
    if (typeof Model === "function" && Model.apiVersion && Model.kind) {
      models.set(`${Model.apiVersion}/${Model.kind}`, Model);
    }
  }
}

let failed = 0;
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node scripts/validate-istio.mjs FILE...");
  process.exit(2);
}
for (const file of files) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      console.log(`${file}: YAML error: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const what = `${file}: ${obj.kind}/${obj.metadata?.name}`;
    const Model = models.get(key);
    if (!Model) {
      console.log(`${what}: not an Istio kind known to the schemas (${key})`);
      failed++;
      continue;
    }
    if (!obj.metadata?.name) {
      console.log(`${what}: metadata.name is missing`);
      failed++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`${what}: valid (${key})`);
    } catch (e) {
      console.log(`${what}: INVALID: ${e.message}`);
      failed++;
    }
  }
}
process.exit(failed === 0 ? 0 : 1);
