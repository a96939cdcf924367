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
# shellcheck source=scripts/lib-apt.sh
. scripts/lib-apt.sh
apt_ensure run.sh "${BUILD_PKGS[@]}"

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DLOSSD_BUILD_TESTS=OFF >/dev/null
if ! cmake --build "$BUILD_DIR" -j"$(nproc)" --target lossd >"$BUILD_DIR/build.log" 2>&1; then
	cat "$BUILD_DIR/build.log" >&2
	exit 1
fi
exec "$BUILD_DIR/server/lossd" "$@"
