#!/usr/bin/env bash
# Replay docker/Dockerfile without a Docker engine, so a broken build step is
# caught here rather than on someone's `docker build`: the builder stage's RUN
# steps run as written (/bin/sh -c) in a temporary copy of the working tree's
# files, then the runtime stage is checked (packages exist, COPY sources were
# built, shared libraries come from the runtime packages, the binary passes the
# HEALTHCHECK as an unprivileged user and stops on SIGTERM). Prints a table of
# seconds per step. Exit 0 only when everything passed.
#
# Usage: docker/build-steps.sh [--install-deps] [--keep] [--skip-smoke]
#   --install-deps  apt-get install build/runtime packages that are missing
#   --keep          keep the temporary folder (it is always kept on failure)
#   --skip-smoke    do not start the binary
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
exec "$py" "$here/dockertool.py" build "$@"
