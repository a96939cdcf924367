-- bench/wrk/sleep.lua - POST /v1/_sleep?ms=N (LOSSD_TEST_HOOKS=1 only):
-- each request holds a worker N ms, so a few connections fill
-- --max-inflight and the rest must be answered 503 with Retry-After.
-- Env: SLEEP_MS (default 20). Shares the counting of small.lua.
dofile(os.getenv("WRK_DIR") .. "/small.lua")
wrk.path = "/v1/_sleep?ms=" .. (os.getenv("SLEEP_MS") or "20")
wrk.body = "{}"
