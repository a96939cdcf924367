#!/usr/bin/env bash
# scripts/openapi-json.sh - convert openapi.yaml to JSON for the contract test.
#
#   scripts/openapi-json.sh OUT.json      (e.g. build/openapi.json)
#
# The e2e suite validates every reply against openapi.yaml when
# LOSSD_OPENAPI_JSON names this file (tests/e2e/contract.py; Python's stdlib
# reads no YAML). Needs node and npm; installs the pinned `yaml` package into
# tools/contract/node_modules with `npm ci` on first use. The JSON is a build
# artifact: write it into a build directory, never commit it.
set -euo pipefail

out=${1:?usage: scripts/openapi-json.sh OUT.json}
root=$(cd "$(dirname "$0")/.." && pwd)
tools=$root/tools/contract
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "openapi-json.sh: needs node and npm (apt-get install nodejs npm)" >&2
	exit 1
fi
if [ ! -d "$tools/node_modules/yaml" ]; then
	(cd "$tools" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
tmp=$out.tmp.$$
node "$tools/to-json.mjs" "$root/openapi.yaml" >"$tmp"
mv "$tmp" "$out"
