#!/bin/sh
# vendor-web.sh - vendors the dashboard's chart library and renders the API
# docs, so the C build never needs npm or the network.
#
#   scripts/vendor-web.sh          npm ci in web/, copy uPlot (pinned in
#                                  web/package-lock.json) into web/vendor/,
#                                  write web/vendor/VERSIONS (version +
#                                  sha256), render web/docs.html from
#                                  openapi.yaml
#   scripts/vendor-web.sh --check  do the same into a temporary directory and
#                                  fail if the committed files differ (CI:
#                                  docs.html is stale, or vendor/ was edited)
#
# The outputs are committed; server/CMakeLists.txt embeds them in lossd.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/web"
check=0
[ "${1:-}" = "--check" ] && check=1

command -v npm >/dev/null || { echo "vendor-web: npm is missing (apt-get install -y npm)" >&2; exit 2; }
(cd "$web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

if [ $check = 1 ]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
else
	out="$web"
fi
mkdir -p "$out/vendor"

src="$web/node_modules/uplot"
ver=$(node -p "require('$src/package.json').version")
cp "$src/dist/uPlot.iife.min.js" "$src/dist/uPlot.min.css" "$out/vendor/"
cp "$src/LICENSE" "$out/vendor/uPlot.LICENSE"
{
	echo "# Files vendored by scripts/vendor-web.sh from npm; do not edit by hand."
	echo "# name version file sha256"
	for f in uPlot.iife.min.js uPlot.min.css uPlot.LICENSE; do
		echo "uplot $ver $f $(sha256sum "$out/vendor/$f" | cut -d' ' -f1)"
	done
} > "$out/vendor/VERSIONS"

node "$web/tools/render-docs.mjs" "$root/openapi.yaml" > "$out/docs.html"
if grep -Eq '(src|href)="(https?:)?//' "$out/docs.html"; then
	echo "vendor-web: docs.html refers to another host" >&2
	exit 1
fi

if [ $check = 1 ]; then
	fail=0
	for f in vendor/uPlot.iife.min.js vendor/uPlot.min.css vendor/uPlot.LICENSE vendor/VERSIONS docs.html; do
		if ! cmp -s "$out/$f" "$web/$f"; then
			echo "vendor-web: web/$f is out of date; run scripts/vendor-web.sh" >&2
			fail=1
		fi
	done
	[ $fail = 0 ] && echo "vendor-web: web/ is up to date (uplot $ver)"
	exit $fail
fi
echo "vendor-web: uplot $ver vendored, web/docs.html rendered"
