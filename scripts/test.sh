#!/usr/bin/env bash
# scripts/test.sh - set up a fresh Debian 12 machine and run every test.
#
#   scripts/test.sh            everything (what CI runs, via .ci/run)
#   scripts/test.sh --quick    only the build and ctest (unit, race, e2e)
#   BUILD_DIR=/tmp/b CTEST_ARGS="-L unit" scripts/test.sh --quick
#
# Stages, each reported as it ends; a failing stage does not stop the
# others, and the script exits non-zero when any failed:
#   core      apt-get install, build with -DLOSSD_WERROR=ON, ctest: Criterion
#             unit tests, race executables, end-to-end tests against the real
#             binary, every e2e reply checked against openapi.yaml (contract)
#   lint      openapi.yaml lint, clang-format, vendored web files up to date,
#             Dockerfile / compose / Kubernetes lint
#   sanitize  the whole ctest suite under ASan+UBSan, race tests under TSan
#   fuzz      each libFuzzer harness for FUZZ_SECONDS (default 45)
#   browser   the dashboard and /docs in headless Chromium
#   docker    the Dockerfile's build steps replayed in a clean folder
#   bench     every benchmark on tiny sizes, peers not installed (asserts
#             accuracy, never time; bench/run.sh does the full comparison),
#             and the wrk load / overload run for LOAD_SECONDS (default 5)
#
# Installs what each stage needs with apt-get (as root, or through sudo) and
# npm (pinned lock files). Idempotent: a second run only rebuilds.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
# shellcheck source=scripts/lib-apt.sh
. scripts/lib-apt.sh
test_pkgs=("${BUILD_PKGS[@]}" libcriterion-dev python3 openssl
	# the PostgreSQL store's tests: a private PostgreSQL 15 and a real HAProxy
	# (tests/e2e/pg_harness.py, test_pg_replicas.py)
	postgresql haproxy
	# the Python client: its hooks in a two-rank torch.distributed run
	# (tests/e2e/test_ddp_hooks.py), the loss aliases against PyTorch, its wheel;
	# the random differential run against PyTorch and scikit-learn
	# (tests/differential/differential.py, ctest's differential_smoke)
	python3-numpy python3-sklearn python3-torch python3-venv python3-setuptools python3-pip
	python3-wheel
	# tests/e2e/test_readme.py runs the README's curl examples
	curl
	# tests/e2e/test_process_metrics.py: promtool check metrics on /metrics
	prometheus)
command -v npm >/dev/null || test_pkgs+=(nodejs npm) # scripts/openapi-json.sh
apt_ensure test.sh "${test_pkgs[@]}"

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
ROOT=$PWD
failed=()
passed=()
stage() { # stage NAME COMMAND...: runs a stage, records its result
	local name=$1 t0=$SECONDS rc=0
	shift
	echo "== test.sh: stage $name" >&2
	"$@" || rc=$?
	if [ "$rc" -eq 0 ]; then
		passed+=("$name")
		echo "== test.sh: stage $name passed ($((SECONDS - t0)) s)" >&2
	else
		failed+=("$name")
		echo "== test.sh: stage $name FAILED (exit $rc, $((SECONDS - t0)) s)" >&2
	fi
}

core() {
	# shellcheck disable=SC2086 # CMAKE_ARGS is a list of words on purpose
	cmake -S . -B "$BUILD_DIR" -DLOSSD_WERROR=ON -DLOSSD_BUILD_TESTS=ON ${CMAKE_ARGS:-} >/dev/null
	if ! cmake --build "$BUILD_DIR" -j"$(nproc)" >"$BUILD_DIR/build.log" 2>&1; then
		cat "$BUILD_DIR/build.log" >&2
		echo "test.sh: build failed (log: $BUILD_DIR/build.log)" >&2
		return 1
	fi
	# The contract: the e2e tests check every reply against openapi.yaml, read
	# as JSON (tests/e2e/contract.py; the pinned YAML parser is in tools/contract).
	scripts/openapi-json.sh "$BUILD_DIR/openapi.json"
	LOSSD_OPENAPI_JSON="$(cd "$BUILD_DIR" && pwd)/openapi.json"
	# the Python client's wheel, built by e2e_test_client_install, kept here
	LOSSD_WHEEL_DIR="$(cd "$BUILD_DIR" && pwd)/dist"
	export LOSSD_OPENAPI_JSON LOSSD_WHEEL_DIR
	# Sequential: several e2e tests load the machine on purpose.
	# shellcheck disable=SC2086
	(cd "$BUILD_DIR" && ctest --output-on-failure ${CTEST_ARGS:-})
}

lint() {
	scripts/ci-lint.sh && scripts/vendor-web.sh --check && docker/lint.sh
}

stage core core
if [ "$QUICK" -eq 0 ]; then
	export LOSSD_BIN="$ROOT/$BUILD_DIR/server/lossd"
	stage lint lint
	stage sanitize scripts/ci-sanitize.sh
	stage fuzz env FUZZ_SECONDS="${FUZZ_SECONDS:-45}" scripts/ci-fuzz.sh
	stage browser scripts/ci-browser.sh
	stage docker docker/build-steps.sh
	# shellcheck disable=SC2016 # expanded by the inner bash, on purpose
	stage bench bash -c 'bench/run.sh --smoke --no-install && LOAD_SECONDS="${LOAD_SECONDS:-5}" bench/load.sh'
fi

echo "test.sh: stages ${#passed[@]} passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ "${#failed[@]}" -eq 0 ]
