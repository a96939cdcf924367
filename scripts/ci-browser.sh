#!/bin/sh
# ci-browser.sh - the dashboard (/) and API reference (/docs) in a real
# browser: Debian's chromium driven by playwright-core from npm (no browser
# download), through tests/browser/*.test.mjs and node's own test runner.
#
#   scripts/ci-browser.sh    installs chromium, nodejs and npm with apt-get
#                            if missing, checks web/ is up to date
#                            (scripts/vendor-web.sh --check), builds lossd
#                            into build/ unless LOSSD_BIN names one, runs
#                            `node --test tests/browser/`
#
# Exits non-zero on any failure. The screenshots (1400 px and 700 px wide)
# land in build/browser-screenshots/ (LOSSD_SCREENSHOT_DIR to change it).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$(date +%s)

need=""
command -v chromium >/dev/null || need="$need chromium"
command -v node >/dev/null || need="$need nodejs"
command -v npm >/dev/null || need="$need npm"
if [ -n "$need" ]; then
	echo "ci-browser: installing$need"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi

scripts/vendor-web.sh --check

bin=${LOSSD_BIN:-$root/build/server/lossd}
if [ -z "${LOSSD_BIN:-}" ]; then
	cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$root/build" -j"$(nproc)" --target lossd >/dev/null
fi
[ -x "$bin" ] || { echo "ci-browser: no lossd at $bin" >&2; exit 1; }

(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
LOSSD_BIN=$bin CHROMIUM_BIN=${CHROMIUM_BIN:-$(command -v chromium)} node --test tests/browser/
echo "ci-browser: passed in $(($(date +%s) - start)) s"
