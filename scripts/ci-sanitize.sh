#!/usr/bin/env bash
# scripts/ci-sanitize.sh - the whole test suite under ASan+UBSan, and the
# race executables under TSan.
#
#   scripts/ci-sanitize.sh            both passes
#   scripts/ci-sanitize.sh asan       only AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/ci-sanitize.sh tsan       only ThreadSanitizer
#
# ASan pass: configures build-asan (or $ASAN_BUILD_DIR) with
# -DLOSSD_SANITIZE=address,undefined -DLOSSD_WERROR=ON and runs every ctest
# test (unit, race and e2e: the e2e tests start the sanitized lossd through
# LOSSD_BIN, and the harness asserts lossd exits 0 on SIGTERM, so a leak or
# a UBSan report at run time fails the test). Leaks are checked
# (detect_leaks=1), any report aborts (abort_on_error / halt_on_error);
# scripts/lsan.supp names the only leaks tolerated (GnuTLS' own, on a bad
# certificate at startup).
#
# TSan pass: configures build-tsan (or $TSAN_BUILD_DIR) with
# -DLOSSD_SANITIZE=thread and builds and runs only the tests labelled "race"
# (plain executables: Criterion's runner aborts under TSan). CC picks the
# compiler for both (default: cc).
#
# Exits non-zero when a build or a test fails; prints each pass's duration.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-$ROOT/build-asan}
TSAN_BUILD_DIR=${TSAN_BUILD_DIR:-$ROOT/build-tsan}
JOBS=${JOBS:-$(nproc)}
what=${1:-all}

# Symbolized stacks when llvm-symbolizer is around (it is with clang-14).
for s in llvm-symbolizer llvm-symbolizer-14; do
	if command -v "$s" >/dev/null; then
		export ASAN_SYMBOLIZER_PATH
		ASAN_SYMBOLIZER_PATH=$(command -v "$s")
		break
	fi
done

build() { # build <dir> <log name> [targets...]
	local dir=$1 name=$2
	shift 2
	local targets=()
	for t in "$@"; do targets+=(--target "$t"); done
	if ! cmake --build "$dir" -j"$JOBS" "${targets[@]}" >"$dir/$name.log" 2>&1; then
		tail -n 60 "$dir/$name.log" >&2
		echo "ci-sanitize: build failed (log: $dir/$name.log)" >&2
		exit 1
	fi
}

run_asan() {
	local t0=$SECONDS
	echo "== ASan+UBSan: configure + build $ASAN_BUILD_DIR"
	cmake -S . -B "$ASAN_BUILD_DIR" -DLOSSD_SANITIZE=address,undefined -DLOSSD_WERROR=ON \
		-DLOSSD_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	build "$ASAN_BUILD_DIR" build
	echo "== ASan+UBSan: ctest (all tests)"
	# detect_leaks=1 also covers the forked Criterion workers; halt at the
	# first report so it cannot scroll by unnoticed.
	# shellcheck disable=SC2086 # CTEST_ARGS is a list of words on purpose
	(
		cd "$ASAN_BUILD_DIR"
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		LSAN_OPTIONS=print_suppressions=0:suppressions=$ROOT/scripts/lsan.supp \
			ctest --output-on-failure --timeout 900 ${CTEST_ARGS:-}
	)
	echo "== ASan+UBSan: passed in $((SECONDS - t0)) s"
}

run_tsan() {
	local t0=$SECONDS
	echo "== TSan: configure + build $TSAN_BUILD_DIR (race executables only)"
	cmake -S . -B "$TSAN_BUILD_DIR" -DLOSSD_SANITIZE=thread -DLOSSD_WERROR=ON \
		-DLOSSD_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	# The race tests are named after their targets (tests/CMakeLists.txt).
	local races
	mapfile -t races < <(cd "$TSAN_BUILD_DIR" && ctest -N -L race |
		sed -n 's/^ *Test *#[0-9]*: *\([A-Za-z0-9_]*\)$/\1/p')
	if ((${#races[@]} == 0)); then
		echo "ci-sanitize: no tests labelled race" >&2
		exit 1
	fi
	build "$TSAN_BUILD_DIR" build "${races[@]}"
	echo "== TSan: ctest -L race (${races[*]})"
	(
		cd "$TSAN_BUILD_DIR"
		TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:exitcode=66 \
			ctest --output-on-failure -L race --timeout 900
	)
	echo "== TSan: passed in $((SECONDS - t0)) s"
}

case $what in
all) run_asan; run_tsan ;;
asan) run_asan ;;
tsan) run_tsan ;;
*) echo "usage: $0 [all|asan|tsan]" >&2; exit 2 ;;
esac
