-- wrk script: POST the body in the file named by $BENCH_BODY, as JSON.
-- Used by bench/http_bench.py for every server, so all get the same bytes.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
