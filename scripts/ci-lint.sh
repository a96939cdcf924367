#!/usr/bin/env bash
# scripts/ci-lint.sh - the static checks CI runs before the tests:
#   1. openapi.yaml lints clean with @redocly/cli (pinned in tools/lint,
#      installed from the npm registry with `npm ci`, then run offline);
#   2. every C file is formatted as .clang-format says (clang-format 14).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v npm >/dev/null || need+=(nodejs npm)
command -v clang-format >/dev/null || need+=(clang-format)
command -v shellcheck >/dev/null || need+=(shellcheck) # docker/lint.sh checks the scripts with it
if ((${#need[@]})); then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "ci-lint: openapi.yaml"
(cd tools/lint && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
tools/lint/node_modules/.bin/redocly lint --config redocly.yaml openapi.yaml

echo "ci-lint: clang-format"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror
echo "ci-lint: ok"
