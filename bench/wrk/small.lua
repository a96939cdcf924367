-- bench/wrk/small.lua - a small POST /v1/loss (2 rows, 3 classes) for wrk,
-- counting the replies by status. Used by bench/load.sh.
-- Env: LOSSD_TOKEN adds "Authorization: Bearer <token>".
wrk.method = "POST"
wrk.path = "/v1/loss"
wrk.headers["Content-Type"] = "application/json"
local tok = os.getenv("LOSSD_TOKEN")
if tok and tok ~= "" then
	wrk.headers["Authorization"] = "Bearer " .. tok
end
wrk.body = '{"loss":"sparse_categorical_crossentropy","y_true":[1,2],' ..
	'"y_pred":[[0.05,0.95,0],[0.1,0.8,0.1]]}'

local threads = {}

function setup(thread)
	table.insert(threads, thread)
end

function init(args)
	ok, overloaded, other, retry_after = 0, 0, 0, 0
end

function response(status, headers, body)
	if status == 200 then
		ok = ok + 1
	elseif status == 503 then
		overloaded = overloaded + 1
		if headers["Retry-After"] or headers["retry-after"] then
			retry_after = retry_after + 1
		end
	else
		other = other + 1
	end
end

function done(summary, latency, requests)
	local t = {ok = 0, overloaded = 0, other = 0, retry_after = 0}
	for _, th in ipairs(threads) do
		for k, _ in pairs(t) do
			t[k] = t[k] + (th:get(k) or 0)
		end
	end
	io.write(string.format(
		"STATUS ok=%d overloaded=%d retry_after=%d other=%d\n",
		t.ok, t.overloaded, t.retry_after, t.other))
	io.write(string.format("LAT p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
	io.write(string.format("REQS total=%d seconds=%.2f rps=%.1f errors_connect=%d "
		.. "errors_read=%d errors_timeout=%d\n",
		summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
		summary.errors.connect, summary.errors.read, summary.errors.timeout))
end
