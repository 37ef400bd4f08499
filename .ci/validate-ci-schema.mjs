// Validates GitLab CI YAML against GitLab's own JSON schema (Draft 7):
//   node .ci/validate-ci-schema.mjs SCHEMA FILE...
// A file of two documents is a component: its header (spec:inputs) and its
// body are validated separately. The schema does not know spec:component, so
// that key is checked here and removed before validation. The body is
// validated as GitLab would see it with default inputs: an interpolation
// that fills a whole value keeps the input's type; component.version is
// filled with a sample version.
import fs from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(process.env.JS_TOOLS + "/");
const Ajv = require("ajv").default;
const addFormats = require("ajv-formats").default;
const YAML = require("yaml");

const [schemaFile, ...files] = process.argv.slice(2);
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaFile, "utf8")));
let failed = false;

function check(what, doc) {
  if (validate(doc)) {
    console.log(`ok: ${what} validates against GitLab's CI schema`);
    return;
  }
  failed = true;
  console.error(`FAIL: ${what}:`);
  for (const e of validate.errors) console.error(`  ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
}

function interpolate(value, inputs) {
  if (typeof value === "string") {
    const whole = value.match(/^\$\[\[\s*inputs\.(\w+)\s*\]\]$/);
    if (whole) return inputs[whole[1]];
    return value
      .replace(/\$\[\[\s*inputs\.(\w+)\s*\]\]/g, (_, name) => String(inputs[name]))
      .replace(/\$\[\[\s*component\.version\s*\]\]/g, "1.2.3");
  }
  if (Array.isArray(value)) return value.map((v) => interpolate(v, inputs));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [interpolate(k, inputs), interpolate(v, inputs)]));
  }
  return value;
}

for (const file of files) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    return d.toJS();
  });
  if (docs.length === 1) {
    check(file, docs[0]);
    continue;
  }
  const header = docs[0];
  const component = header.spec.component;
  if (component !== undefined) {
    if (JSON.stringify(component) !== JSON.stringify(["version"])) {
      failed = true;
      console.error(`FAIL: ${file}: spec:component is ${JSON.stringify(component)}, expected ["version"]`);
    }
    delete header.spec.component;
  }
  check(`${file} (header)`, header);
  const defaults = {};
  for (const [name, input] of Object.entries(header.spec.inputs || {})) {
    if (input.description === undefined || input.type === undefined) {
      failed = true;
      console.error(`FAIL: ${file}: input ${name} needs a description and a type`);
    }
    defaults[name] = input.default;
  }
  check(`${file} (body, default inputs)`, interpolate(docs[1], defaults));
}
process.exit(failed ? 1 : 0);
