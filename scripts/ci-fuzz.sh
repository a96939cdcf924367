#!/usr/bin/env bash
# scripts/ci-fuzz.sh - build the libFuzzer harnesses (tests/fuzz) with clang
# and run each one for a bounded time.
#
#   scripts/ci-fuzz.sh                       every harness, 60 s each
#   FUZZ_SECONDS=600 scripts/ci-fuzz.sh      a longer run
#   scripts/ci-fuzz.sh fuzz_request          only the harnesses named
#
# Each harness tests/fuzz/fuzz_<name>.c starts from its seed corpus
# (tests/fuzz/corpus_<name>/ when it exists, else tests/fuzz/corpus/) plus a
# scratch directory that receives what the run discovers, so the committed
# seeds are never modified. The harnesses are built with ASan+UBSan (leak
# checking on), so a crash, a sanitizer report, a leak, an input slower
# than FUZZ_TIMEOUT seconds (default 10) or an RSS past FUZZ_RSS_MB (2048)
# makes libFuzzer exit non-zero and this script fail; the input that did it
# is kept in $FUZZ_BUILD_DIR/artifacts/<harness>/.
#
# Prints, per harness, the executions, the corpus size and the coverage
# libFuzzer reached. Environment: CC (default clang), FUZZ_BUILD_DIR
# (default build-cifuzz), FUZZ_SECONDS, FUZZ_TIMEOUT, FUZZ_RSS_MB.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-$ROOT/build-cifuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
export CC=${CC:-clang}

# clang and its libFuzzer runtime (Debian: clang-14, libclang-rt-14-dev).
if ! command -v "$CC" >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null |
	grep -q "install ok installed"; then
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	echo "ci-fuzz: installing clang-14 libclang-rt-14-dev" >&2
	$SUDO apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
		clang-14 libclang-rt-14-dev >/dev/null
	command -v "$CC" >/dev/null || export CC=clang-14
fi

for s in llvm-symbolizer llvm-symbolizer-14; do
	if command -v "$s" >/dev/null; then
		export ASAN_SYMBOLIZER_PATH
		ASAN_SYMBOLIZER_PATH=$(command -v "$s")
		break
	fi
done

harnesses=("$@")
if ((${#harnesses[@]} == 0)); then
	for f in tests/fuzz/fuzz_*.c; do
		harnesses+=("$(basename "$f" .c)")
	done
fi

echo "== fuzz: configure + build $FUZZ_BUILD_DIR with $CC"
cmake -S . -B "$FUZZ_BUILD_DIR" -DLOSSD_FUZZ=ON -DLOSSD_BUILD_TESTS=OFF -DLOSSD_WERROR=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=()
for h in "${harnesses[@]}"; do targets+=(--target "$h"); done
if ! cmake --build "$FUZZ_BUILD_DIR" -j"$(nproc)" "${targets[@]}" >"$FUZZ_BUILD_DIR/build.log" 2>&1; then
	tail -n 60 "$FUZZ_BUILD_DIR/build.log" >&2
	echo "ci-fuzz: build failed (log: $FUZZ_BUILD_DIR/build.log)" >&2
	exit 1
fi

status=0
summary=()
for h in "${harnesses[@]}"; do
	name=${h#fuzz_}
	seeds=tests/fuzz/corpus_$name
	[ -d "$seeds" ] || seeds=tests/fuzz/corpus
	work=$FUZZ_BUILD_DIR/corpus/$h
	artifacts=$FUZZ_BUILD_DIR/artifacts/$h
	log=$FUZZ_BUILD_DIR/$h.log
	mkdir -p "$work" "$artifacts"
	dict=()
	[ -f tests/fuzz/json.dict ] && dict=(-dict=tests/fuzz/json.dict)
	echo "== fuzz: $h for ${FUZZ_SECONDS}s (seeds: $seeds, log: $log)"
	t0=$SECONDS
	rc=0
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$FUZZ_BUILD_DIR/tests/fuzz/$h" "$work" "$seeds" "${dict[@]}" \
		-max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" \
		-rss_limit_mb="$FUZZ_RSS_MB" -malloc_limit_mb="$FUZZ_RSS_MB" \
		-artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
	units=$(find "$work" -type f | wc -l)
	line="$h: rc=$rc executions=${execs:-?} seconds=$((SECONDS - t0)) cov=${cov:-?} corpus=$units"
	echo "$line"
	summary+=("$line")
	if ((rc != 0)); then
		status=1
		echo "ci-fuzz: $h FAILED; the end of its log:" >&2
		tail -n 80 "$log" >&2
		ls -l "$artifacts" >&2
	fi
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit $status
