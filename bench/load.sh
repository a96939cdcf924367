#!/usr/bin/env bash
# bench/load.sh - load and overload figures for lossd with wrk on loopback.
#
#   bench/load.sh                 10 s per run (default), prints a summary
#   LOAD_SECONDS=30 bench/load.sh
#
# Runs, each against a fresh lossd (LOSSD_BIN, default build/server/lossd,
# built with cmake when missing) on 127.0.0.1 with a throw-away data dir:
#   1. small: POST /v1/loss with a 2x3 request (bench/wrk/small.lua), 2 wrk
#      threads x 32 connections, default limits: req/s, p50/p99 latency.
#   2. overload-sleep: --threads 2 --max-inflight 4 and 64 connections
#      posting /v1/_sleep?ms=20 (each holds a worker 20 ms; LOSSD_TEST_HOOKS),
#      so capacity is ~100 req/s and most requests must be refused: counts
#      of 200 and 503, how many 503 carried Retry-After, p99 (the accepted
#      ones wait at most max-inflight/threads sleeps), and VmRSS before,
#      peak (sampled every 0.2 s) and after.
#   3. overload-small: --http-threads 2 --max-inflight 1, 128 connections of
#      the small request: the same counts and memory for real work. (A small
#      /v1/loss is computed on the HTTP thread that read it, so with two
#      HTTP threads two can be in flight; a bound of 1 refuses the second.)
# Fails (exit 1) when a run sees a status other than 200/503, a 503 without
# Retry-After, no 503 at all in an overload run, or RSS growing by more than
# LOAD_RSS_MB (default 64) over a run. Results go to stdout and, as one
# JSON object per run, to $LOAD_OUT (default bench/results/load.jsonl).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER_RUN=${LOAD_SECONDS:-10}
RSS_MB=${LOAD_RSS_MB:-64}
OUT=${LOAD_OUT:-$ROOT/bench/results/load.jsonl}
BIN=${LOSSD_BIN:-$ROOT/build/server/lossd}
export WRK_DIR=$ROOT/bench/wrk

if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	echo "load.sh: installing wrk curl" >&2
	$SUDO apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk curl >/dev/null
fi
if [ ! -x "$BIN" ]; then
	cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$ROOT/build" -j"$(nproc)" --target lossd >/dev/null
fi
mkdir -p "$(dirname "$OUT")"
: >"$OUT"

TMP=$(mktemp -d)
PID=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

start() { # start <lossd flags...>: sets PID and PORT
	LOSSD_TEST_HOOKS=1 "$BIN" --bind 127.0.0.1 --port 0 --data-dir "$TMP/data" \
		--log-level warn "$@" >"$TMP/log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		PORT=$(sed -n 's/.*"msg":"listening".*"port":\([0-9]*\).*/\1/p' "$TMP/log" | head -n 1)
		[ -n "$PORT" ] && break
		sleep 0.05
	done
	[ -n "$PORT" ] || { cat "$TMP/log" >&2; echo "load.sh: lossd did not start" >&2; exit 1; }
	for _ in $(seq 100); do
		curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
}

stop() {
	kill "$PID"
	wait "$PID" || true
	PID=""
}

status=0
run() { # run <name> <lua> <threads> <connections> <overload 0|1> <lossd flags...>
	local name=$1 lua=$2 wt=$3 conns=$4 overload=$5
	shift 5
	start "$@"
	# warm up, then measure
	wrk -t1 -c4 -d1s -s "$WRK_DIR/$lua" "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true
	local rss0 peak=0 r
	rss0=$(rss_kb "$PID")
	(
		while kill -0 "$PID" 2>/dev/null; do
			rss_kb "$PID"
			sleep 0.2
		done
	) >"$TMP/rss" 2>/dev/null &
	local sampler=$!
	wrk -t"$wt" -c"$conns" -d"${SECONDS_PER_RUN}s" --timeout 10s -s "$WRK_DIR/$lua" \
		"http://127.0.0.1:$PORT" >"$TMP/wrk" 2>&1
	sleep 0.5
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	while read -r r; do ((r > peak)) && peak=$r; done <"$TMP/rss"
	local rss1
	rss1=$(rss_kb "$PID")
	stop
	local st lat reqs
	st=$(grep '^STATUS' "$TMP/wrk") lat=$(grep '^LAT' "$TMP/wrk") reqs=$(grep '^REQS' "$TMP/wrk")
	if [ -z "$st" ]; then
		cat "$TMP/wrk" >&2
		echo "load.sh: $name: wrk printed no summary" >&2
		status=1
		return
	fi
	val() { sed -n "s/.*\\b$1=\\([0-9.]*\\).*/\\1/p" <<<"$2"; }
	local ok ovl ra other rps p50 p99 total
	ok=$(val ok "$st") ovl=$(val overloaded "$st") ra=$(val retry_after "$st") other=$(val other "$st")
	rps=$(val rps "$reqs") total=$(val total "$reqs") p50=$(val p50_ms "$lat") p99=$(val p99_ms "$lat")
	printf '%-15s %8s req/s  p50 %7s ms  p99 %7s ms  200: %-7s 503: %-7s (Retry-After on %s)  other: %s  RSS %d -> peak %d -> %d MB\n' \
		"$name" "$rps" "$p50" "$p99" "$ok" "$ovl" "$ra" "$other" \
		$((rss0 / 1024)) $((peak / 1024)) $((rss1 / 1024))
	printf '{"run":"%s","seconds":%s,"connections":%s,"requests":%s,"rps":%s,"p50_ms":%s,"p99_ms":%s,"ok":%s,"overloaded":%s,"retry_after":%s,"other":%s,"rss_kb_before":%s,"rss_kb_peak":%s,"rss_kb_after":%s}\n' \
		"$name" "$SECONDS_PER_RUN" "$conns" "$total" "$rps" "$p50" "$p99" "$ok" "$ovl" "$ra" "$other" \
		"$rss0" "$peak" "$rss1" >>"$OUT"
	if ((other > 0)); then
		echo "load.sh: $name: $other replies were neither 200 nor 503" >&2
		status=1
	fi
	if ((ra != ovl)); then
		echo "load.sh: $name: $((ovl - ra)) 503s without Retry-After" >&2
		status=1
	fi
	if ((overload == 1 && ovl == 0)); then
		echo "load.sh: $name: the overload run saw no 503" >&2
		status=1
	fi
	if (((peak - rss0) / 1024 > RSS_MB)); then
		echo "load.sh: $name: RSS grew by $(((peak - rss0) / 1024)) MB (bound $RSS_MB)" >&2
		status=1
	fi
}

echo "lossd load figures: $(nproc) CPUs, ${SECONDS_PER_RUN}s per run, wrk on loopback"
run small small.lua 2 32 0
SLEEP_MS=20 run overload-sleep sleep.lua 2 64 1 --threads 2 --max-inflight 4
run overload-small small.lua 2 128 1 --threads 1 --http-threads 2 --max-inflight 1
echo "results: $OUT"
exit $status
