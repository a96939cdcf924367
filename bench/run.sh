#!/bin/bash
# bench/run.sh - lossd's performance figures next to what users would
# otherwise run, in one run on one machine, as ONE table of ratios.
#
#   bench/run.sh            full run (about 15 minutes on 2 cores); writes
#                           bench/results/latest.md and latest.jsonl
#   bench/run.sh --smoke    every benchmark on tiny sizes in well under a
#                           minute of measuring: checks that each program runs
#                           and that its accuracy checks hold; asserts no time
#                           (for CI). Writes bench/results/smoke.md.
# Options: --no-install (do not apt-get the peers), --only LIST (comma list
# of: bandwidth,loss,metrics,auc,json,http,body,sketch,streams,durable,pg,startup,profile). A full run also
# writes perf profiles of the hot cases to bench/results/profiles/.
# Env: BENCH_BUILD_DIR (default <repo>/build-bench).
#
# The peers (PyTorch, scikit-learn, FastAPI under uvicorn, wrk) come from
# Debian's packages and are installed here, never by the product. A peer
# that cannot be installed is skipped and its rows say "not run".
# Exit status: non-zero when a benchmark failed or an accuracy check did
# not hold; a target that is not met is a figure, not a failure.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
PY=/usr/bin/python3
SMOKE=0
INSTALL=1
ONLY=bandwidth,loss,metrics,auc,json,http,body,sketch,streams,durable,pg,startup,profile
while [ $# -gt 0 ]; do
	case "$1" in
	--smoke) SMOKE=1 ;;
	--no-install) INSTALL=0 ;;
	--only) ONLY=$2; shift ;;
	*) echo "usage: $0 [--smoke] [--no-install] [--only LIST]" >&2; exit 2 ;;
	esac
	shift
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
SM=()
[ $SMOKE = 1 ] && SM=(--smoke)

# ---- peers -------------------------------------------------------------------
have_py() { $PY -c "import $1" >/dev/null 2>&1; }
if [ $INSTALL = 1 ]; then
	pkgs=()
	have_py torch || pkgs+=(python3-torch)
	have_py sklearn || pkgs+=(python3-sklearn)
	have_py numpy || pkgs+=(python3-numpy)
	have_py fastapi || pkgs+=(python3-fastapi)
	have_py uvicorn || pkgs+=(python3-uvicorn)
	# uvicorn's fast event loop and HTTP parser, as `pip install uvicorn[standard]` gives
	have_py uvloop || pkgs+=(python3-uvloop)
	have_py httptools || pkgs+=(python3-httptools)
	command -v wrk >/dev/null || pkgs+=(wrk)
	if [ ${#pkgs[@]} -gt 0 ]; then
		echo "run.sh: installing peers: ${pkgs[*]}" >&2
		if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
		$SUDO apt-get update -qq >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
			"${pkgs[@]}" >/dev/null || echo "run.sh: apt-get failed; missing peers are skipped" >&2
	fi
fi

# ---- build -------------------------------------------------------------------
echo "run.sh: building Release in $BUILD" >&2
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLOSSD_BUILD_TESTS=OFF >/dev/null || exit 1
B=$BUILD/bench
BUILD_FAILED=0
KEEP=(); [ -f "$BUILD/Makefile" ] && KEEP=(-- -k)
# Keep going past a target that does not build: what did build still runs,
# and the failure is counted (and shown) below.
if ! cmake --build "$BUILD" -j2 "${KEEP[@]}" >/tmp/lossd-bench-build.$$ 2>&1; then
	grep -E "error|Error" /tmp/lossd-bench-build.$$ | head -20 >&2
	echo "run.sh: the build FAILED; running what was built" >&2
	BUILD_FAILED=1
fi
rm -f /tmp/lossd-bench-build.$$

mkdir -p "$ROOT/bench/results"
if [ $SMOKE = 1 ]; then NAME=smoke; else NAME=latest; fi
OUT=$ROOT/bench/results/$NAME.jsonl
: >"$OUT"
FAILS=$BUILD_FAILED
run() { # run NAME CMD...: appends the JSON lines to $OUT, counts a failure
	local name=$1; shift
	echo "run.sh: $name: $*" >&2
	if ! "$@" >>"$OUT"; then
		echo "run.sh: $name FAILED" >&2
		FAILS=$((FAILS + 1))
	fi
}
skip() { echo "run.sh: $1 skipped: $2" >&2; }

echo "run.sh: $(date -u '+%F %T UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

if want bandwidth; then run bandwidth "$B/bench_bandwidth" "${SM[@]}"; fi
if want loss; then
	if [ -x "$B/bench_loss" ]; then run loss "$B/bench_loss" "${SM[@]}"
	else skip loss "bench_loss not built (engine incomplete?)"; fi
	if have_py torch; then run torch "$PY" "$ROOT/bench/peers/torch_ce.py" "${SM[@]}"
	else skip torch "python3-torch missing"; fi
fi
if want metrics; then
	if [ -x "$B/bench_metrics" ]; then run metrics "$B/bench_metrics" "${SM[@]}"
	else skip metrics "bench_metrics not built"; fi
fi
if want auc; then
	if [ -x "$B/bench_auc" ]; then run auc "$B/bench_auc" "${SM[@]}"
	else skip auc "bench_auc not built"; fi
	if have_py sklearn; then run sklearn "$PY" "$ROOT/bench/peers/sklearn_auc.py" "${SM[@]}"
	else skip sklearn "python3-sklearn missing"; fi
fi
if want sketch && [ -x "$B/bench_sketch" ]; then
	# the auc helper's own sketch benchmark: plain text, kept beside the table
	n=10000000; [ $SMOKE = 1 ] && n=100000
	echo "run.sh: sketch: $B/bench_sketch $n" >&2
	"$B/bench_sketch" $n >"$ROOT/bench/results/$NAME-sketch.txt" || { echo "run.sh: sketch FAILED" >&2; FAILS=$((FAILS + 1)); }
fi
if want json; then
	run jansson "$B/bench_json" "${SM[@]}"
	run json_lossd "$B/bench_json_lossd" "${SM[@]}"
fi
if want http; then
	if command -v wrk >/dev/null && have_py numpy; then
		args=(--ceiling "$B/mhd_ceiling")
		[ -x "$BUILD/server/lossd" ] && args+=(--lossd "$BUILD/server/lossd" --streams)
		[ $SMOKE = 0 ] && command -v perf >/dev/null && args+=(--perf "$ROOT/bench/results/profiles")
		have_py fastapi && have_py uvicorn && args+=(--fastapi)
		run http "$PY" "$ROOT/bench/http_bench.py" "${args[@]}" "${SM[@]}"
	else
		skip http "wrk or python3-numpy missing"
	fi
fi
if want body; then
	# large base64 and JSON bodies read as they arrive, beside this
	# machine's base64 decode rate (bench_json's table decoder) and JSON
	# lifting rate (bench_json_lossd), measured in the same run
	want json || run b64rate "$B/bench_json" "${SM[@]}"
	want json || run jsonrate "$B/bench_json_lossd" "${SM[@]}"
	if [ -x "$BUILD/server/lossd" ] && have_py numpy; then
		bargs=(--lossd "$BUILD/server/lossd" --body-only)
		[ $SMOKE = 0 ] && command -v perf >/dev/null && bargs+=(--perf "$ROOT/bench/results/profiles")
		run body "$PY" "$ROOT/bench/http_bench.py" "${bargs[@]}" "${SM[@]}"
	else
		skip body "lossd not built or python3-numpy missing"
	fi
fi
if want streams && [ -f "$ROOT/bench/bench_streams.py" ]; then
	if [ -x "$BUILD/server/lossd" ]; then
		# then 10,000 step points read back whole (issue 15: under 20 ms)
		sargs=(--history-read 10000); [ $SMOKE = 1 ] && sargs=(--duration 2 --clients 4 --history-read 300)
		run streams "$PY" "$ROOT/bench/bench_streams.py" --bin "$BUILD/server/lossd" "${sargs[@]}"
	else skip streams "lossd not built"; fi
fi
if want durable; then
	# durable updates: JSON and base64 bodies, 1 and 32 streams, 32 clients,
	# beside the data dir's fsync rate (bench/bench_durable.py)
	if [ -x "$BUILD/server/lossd" ] && [ -x "$B/durable_client" ]; then
		dargs=()
		[ $SMOKE = 0 ] && command -v perf >/dev/null && dargs+=(--perf "$ROOT/bench/results/profiles")
		run durable "$PY" "$ROOT/bench/bench_durable.py" --bin "$BUILD/server/lossd" \
			--client "$B/durable_client" "${dargs[@]}" "${SM[@]}"
	else skip durable "lossd or durable_client not built"; fi
fi
if want pg && [ -f "$ROOT/bench/bench_pg.py" ]; then
	# lossd replicas on PostgreSQL behind HAProxy against one lossd on SQLite, with
	# pgbench's commit rate on the same PostgreSQL: one stream, then 8
	if [ ! -x "$BUILD/server/lossd" ]; then skip pg "lossd not built"
	elif ! command -v pgbench >/dev/null || ! command -v haproxy >/dev/null ||
		[ ! -x "${LOSSD_PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ]; then
		skip pg "postgresql, pgbench or haproxy missing"
	else
		pargs=(); [ $SMOKE = 1 ] && pargs=(--duration 2 --clients 4 --reads 20)
		for ns in 1 8; do
			prof=()
			[ $SMOKE = 0 ] && command -v perf >/dev/null &&
				mkdir -p "$ROOT/bench/results/profiles" &&
				prof=(--perf "$ROOT/bench/results/profiles/profile-pg-s$ns.txt")
			run "pg-s$ns" "$PY" "$ROOT/bench/bench_pg.py" --bin "$BUILD/server/lossd" --streams $ns "${pargs[@]}" "${prof[@]}"
		done
	fi
fi
if want startup; then
	# start-up after kill -9 with a big store and with many streams
	# (builds ~4 GB of stores in a temporary directory: a few minutes)
	if [ -x "$BUILD/server/lossd" ] && [ -x "$B/startup_store" ]; then
		run startup "$PY" "$ROOT/bench/bench_startup.py" --bin "$BUILD/server/lossd" \
			--builder "$B/startup_store" "${SM[@]}"
	else skip startup "lossd or startup_store not built"; fi
fi

if want profile && [ $SMOKE = 0 ] && command -v perf >/dev/null; then
	# What bounds each kernel figure: perf samples of the hot cases alone.
	P=$ROOT/bench/results/profiles
	mkdir -p "$P"
	echo "run.sh: profiles into $P" >&2
	for c in ce/32768x1000 ce/8192x32000 ce/32x512x1000 ce/262144x10 bce/1000000x8; do
		f=$P/profile-loss-$(echo "$c" | tr '/' '-')-t2.txt
		BENCH_ONLY=$c BENCH_IMPL=lossd "$ROOT/bench/profile.sh" -o "$f" "$B/bench_loss" --threads 2 --runs 41
	done
	[ -x "$B/bench_auc" ] && "$ROOT/bench/profile.sh" -o "$P/profile-auc.txt" "$B/bench_auc" --runs 5
	"$ROOT/bench/profile.sh" -o "$P/profile-json-lossd.txt" "$B/bench_json_lossd" --runs 3
fi

HEADER="lossd benchmarks, $(date -u '+%F %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $([ $SMOKE = 1 ] && echo 'smoke sizes: no figure means anything' || echo 'full sizes')"
RARGS=("$OUT" --md "$ROOT/bench/results/$NAME.md" --header "$HEADER")
[ $SMOKE = 1 ] && RARGS+=(--smoke)
echo
echo "$HEADER"
echo
$PY "$ROOT/bench/report.py" "${RARGS[@]}" || FAILS=$((FAILS + 1))
echo
echo "run.sh: raw results in $OUT, table in bench/results/$NAME.md; $FAILS failure(s)" >&2
[ $FAILS = 0 ]
