#!/bin/bash
# bench/profile.sh - where the time of one benchmark goes: perf record with
# the cpu-clock software event (this VM exposes no hardware counters, so
# cycles/instructions/cache misses are "not supported"; sampling on time
# still shows which functions bound a figure), then the top of perf report.
#
#   bench/profile.sh [-o OUT.txt] CMD ARGS...
#     e.g. BENCH_ONLY=ce/8192x32000 bench/profile.sh build-bench/bench/bench_loss --threads 2
#          bench/profile.sh build-bench/bench/bench_auc --runs 3
#   bench/profile.sh -p PID SECONDS     attach to a running process (lossd
#                                       under wrk, see http_bench.py --perf)
#   bench/profile.sh -a SECONDS         the whole machine (lossd replicas,
#                                       PostgreSQL and HAProxy: bench_pg.py --perf);
#                                       "by thread" then shows each process too
# Falls back to valgrind --tool=callgrind when perf is missing.
set -uo pipefail
OUT=/dev/stdout
if [ "${1:-}" = "-o" ]; then OUT=$2; shift 2; fi
DATA=$(mktemp /tmp/lossd-perf.XXXXXX)
if command -v perf >/dev/null; then
	if [ "${1:-}" = "-p" ]; then
		perf record -q -e cpu-clock -F 1999 -g -o "$DATA" -p "$2" -- sleep "$3" >/dev/null 2>&1
	elif [ "${1:-}" = "-a" ]; then
		perf record -q -e cpu-clock -F 999 -g -o "$DATA" -a -- sleep "$2" >/dev/null 2>&1
	else
		perf record -q -e cpu-clock -F 1999 -g -o "$DATA" -- "$@" >/dev/null 2>&1
	fi
	{
		echo "== by shared object"
		perf report -i "$DATA" --stdio --no-children --sort dso --percent-limit 1 \
			-g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
		echo "== by thread (lossd names its threads: docs/ARCHITECTURE.md, Threads)"
		perf report -i "$DATA" --stdio --no-children --sort comm --percent-limit 0.5 \
			-g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
		echo "== by function"
		perf report -i "$DATA" --stdio --no-children --sort dso,symbol --percent-limit 1.5 \
			-g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
		# the store's commit chain, when there is one: its share of that
		# thread's own samples
		if perf report -i "$DATA" --stdio --no-children --sort comm -g none 2>/dev/null |
			grep -q ' lossd-commit *$'; then
			echo "== the committer (lossd-commit), % of its own samples"
			perf report -i "$DATA" --stdio --no-children --comm lossd-commit \
				--percentage relative --sort dso,symbol --percent-limit 2 -g none \
				2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
		fi
	} >"$OUT"
else
	valgrind --tool=callgrind --callgrind-out-file="$DATA" "$@" >/dev/null 2>&1
	callgrind_annotate "$DATA" 2>/dev/null | head -40 >"$OUT"
fi
rm -f "$DATA"
