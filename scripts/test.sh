#!/usr/bin/env bash
# scripts/test.sh - build lossd with -Werror and run every test (unit + e2e).
#
#   scripts/test.sh                 build into build/ and run ctest
#   BUILD_DIR=/tmp/b scripts/test.sh
#   CMAKE_ARGS="-DLOSSD_SANITIZE=address,undefined" BUILD_DIR=build-asan scripts/test.sh
#   CTEST_ARGS="-L unit" scripts/test.sh
#
# Installs the build and test packages with apt-get when any is missing (as
# root, or through sudo; apt's output goes to a log that is shown only if
# it fails), configures with -DLOSSD_WERROR=ON, builds, and runs
# `ctest --output-on-failure`. Idempotent: a second run only rebuilds what
# changed. Exits non-zero when anything fails.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
PKGS=(cmake make gcc libc6-dev pkg-config libmicrohttpd-dev libjansson-dev libuv1-dev
      libsqlite3-dev libcriterion-dev python3 openssl)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || { echo "test.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
		SUDO=sudo
	fi
	log=${TMPDIR:-/tmp}/lossd-apt.log
	echo "test.sh: installing ${missing[*]} (log: $log)" >&2
	if ! { $SUDO apt-get update && \
	       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		exit 1
	fi
fi

# shellcheck disable=SC2086 # CMAKE_ARGS is a list of words on purpose
cmake -S . -B "$BUILD_DIR" -DLOSSD_WERROR=ON -DLOSSD_BUILD_TESTS=ON ${CMAKE_ARGS:-} >/dev/null
if ! cmake --build "$BUILD_DIR" -j"$(nproc)" >"$BUILD_DIR/build.log" 2>&1; then
	cat "$BUILD_DIR/build.log" >&2
	echo "test.sh: build failed (log: $BUILD_DIR/build.log)" >&2
	exit 1
fi
cd "$BUILD_DIR"
# Sequential by default: the e2e tests measure latencies under load.
# shellcheck disable=SC2086
ctest --output-on-failure ${CTEST_ARGS:-}
