-- wrk script of the overhead benchmark: POST BENCH_BODY to the URL's path with
-- a bearer token rotating over tok-0 … tok-<BENCH_TOKENS-1> (0: none), and
-- print one JSON line (the same fields as bench/cmd/load) when done.
local body = os.getenv("BENCH_BODY") or "{}"
local ntokens = tonumber(os.getenv("BENCH_TOKENS") or "1")
local label = os.getenv("BENCH_LABEL") or ""
local requests = {}
local n = 0

function init(args)
  local count = math.max(ntokens, 1)
  for i = 0, count - 1 do
    local headers = { ["Content-Type"] = "application/json" }
    if ntokens > 0 then
      headers["Authorization"] = "Bearer tok-" .. i
    end
    requests[i + 1] = wrk.format("POST", nil, headers, body)
  end
end

function request()
  n = n % #requests + 1
  return requests[n]
end

function done(summary, latency, _)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local ok = summary.requests - e.status
  io.write(string.format(
    '{"label":"%s","tool":"wrk","mode":"closed","conc":%d,"seconds":%.3f,"requests":%d,"non2xx":%d,"errors":%d,' ..
    '"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    label, tonumber(os.getenv("BENCH_CONNS") or "0"), seconds, ok, e.status,
    e.connect + e.read + e.write + e.timeout,
    ok / seconds, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
