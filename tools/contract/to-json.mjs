// tools/contract/to-json.mjs - print openapi.yaml as JSON, for the contract
// checker in tests/e2e/contract.py (Python's stdlib has no YAML parser).
//
//   node tools/contract/to-json.mjs openapi.yaml > build/openapi.json
//
// Uses the `yaml` package pinned in package.json (npm ci here first). The
// document is parsed strictly (duplicate keys and YAML errors fail, exit 1)
// with the YAML 1.2 core schema, so `on`/`yes` stay strings. The output is a
// build artifact and is never committed.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

const file = process.argv[2];
if (!file) {
	process.stderr.write('usage: to-json.mjs openapi.yaml\n');
	process.exit(2);
}
try {
	const doc = parse(readFileSync(file, 'utf8'), { schema: 'core', uniqueKeys: true, prettyErrors: true });
	process.stdout.write(JSON.stringify(doc, null, 1) + '\n');
} catch (e) {
	process.stderr.write(`to-json.mjs: ${file}: ${e.message}\n`);
	process.exit(1);
}
