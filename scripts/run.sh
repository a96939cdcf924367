#!/usr/bin/env bash
# scripts/run.sh - build lossd (Release) and run it, on a fresh Debian 12.
#
#   scripts/run.sh [lossd flags...]      e.g. scripts/run.sh --port 9000
#
# Installs the build and runtime packages with apt-get when any is missing
# (as root, or through sudo), configures and builds into build/ (or
# $BUILD_DIR), then execs build/server/lossd with the flags given. With no
# flags it listens on 0.0.0.0:8080 and keeps streams in ./data.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
PKGS=(cmake make gcc libc6-dev pkg-config libmicrohttpd-dev libjansson-dev libuv1-dev
      libsqlite3-dev)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || { echo "run.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
		SUDO=sudo
	fi
	log=${TMPDIR:-/tmp}/lossd-apt.log
	echo "run.sh: installing ${missing[*]} (log: $log)" >&2
	if ! { $SUDO apt-get update && \
	       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		exit 1
	fi
fi

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DLOSSD_BUILD_TESTS=OFF >/dev/null
if ! cmake --build "$BUILD_DIR" -j"$(nproc)" --target lossd >"$BUILD_DIR/build.log" 2>&1; then
	cat "$BUILD_DIR/build.log" >&2
	exit 1
fi
exec "$BUILD_DIR/server/lossd" "$@"
