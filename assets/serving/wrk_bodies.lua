-- wrk script of the SLO check (assets/serving/load_test.py) and bench/serving_latency.py: POST
-- real request bodies, cycling, and two result lines.
--
-- The bodies are the lines of the JSON-lines file named by WRK_BODIES (one JSON object a line);
-- each request is a POST with Content-Type application/json and the next body, round-robin.
--
-- done() prints one line "WRK_RESULT {json}": the latency percentiles p50/p95/p99, mean and max
-- in milliseconds (wrk's histogram is in microseconds), the requests, the duration, the RPS and
-- the errors: status (HTTP status >= 400, wrk's summary.errors.status) and
-- connect/read/write/timeout. A second line "WRK_HISTOGRAM v:c,v:c,..." holds the histogram the
-- percentiles are read from: each measured latency v (microseconds) with its count c.
--
-- The percentiles are of the latencies wrk measured, one per answered request, from the write of
-- the request to its answer. wrk 4.1 itself reports "coordinated omission corrected" ones: before
-- done() it adds, for every latency n >= 2e (e = duration / (requests / connections), the mean
-- interval between one connection's requests), synthetic samples at n - e, n - 2e, ... down to
-- just above e, as if the requests a stalled connection did not send had been sent on schedule.
-- That is an open-loop view; this benchmark is closed-loop (each connection sends its next
-- request when the answer arrives), and one stall of 2 s turned a p95 of about 8 ms into 1.7 s.
-- So, given WRK_CONNECTIONS (the -c value), the correction is undone: for n > e the corrected
-- count at n is the measured count at n plus the corrected count at n + e. wrk's own corrected
-- p99 is kept as wrk_p99_ms; without WRK_CONNECTIONS the percentiles are wrk's.
--
--   WRK_BODIES=bodies.jsonl WRK_CONNECTIONS=8 \
--     wrk -t1 -c8 -d10s --latency -s assets/serving/wrk_bodies.lua http://127.0.0.1:3000/score

local path = os.getenv("WRK_BODIES")
if not path then
  error("WRK_BODIES must name a JSON-lines file of request bodies")
end
local bodies = {}
for line in io.lines(path) do
  if line ~= "" then
    bodies[#bodies + 1] = line
  end
end
if #bodies == 0 then
  error("no request bodies in " .. path)
end
local connections = tonumber(os.getenv("WRK_CONNECTIONS"))

local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

-- the p-th percentile of a histogram (ascending values, counts), as wrk's stats_percentile
local function percentile(values, counts, total, p)
  local rank = math.floor(p / 100 * total + 0.5 + 0.5)
  local seen = 0
  for k, v in ipairs(values) do
    seen = seen + counts[k]
    if seen >= rank then
      return v
    end
  end
  return 0
end

done = function(summary, latency, requests)
  local values, counts, at = {}, {}, {}
  for k = 1, #latency do
    local v, c = latency(k)
    values[k], counts[k], at[v] = v, c, c
  end
  local corrected = true
  if connections and connections > 0 then
    local per_connection = math.floor(summary.requests / connections)
    if per_connection > 0 then
      local e = math.floor(summary.duration / per_connection)
      for k, v in ipairs(values) do
        if v > e then
          counts[k] = at[v] - (at[v + e] or 0)
        end
      end
    end
    corrected = false
  end
  local total, sum, max = 0, 0, 0
  for k, v in ipairs(values) do
    total = total + counts[k]
    sum = sum + counts[k] * v
    if counts[k] > 0 then
      max = v
    end
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_s": %.6f, "rps": %.3f, "samples": %d, '
      .. '"p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f, "max_ms": %.3f, '
      .. '"corrected": %s, "wrk_p99_ms": %.3f, '
      .. '"errors_status": %d, "errors_connect": %d, "errors_read": %d, '
      .. '"errors_write": %d, "errors_timeout": %d}\n',
    summary.requests, seconds, summary.requests / seconds, total,
    percentile(values, counts, total, 50) / 1000, percentile(values, counts, total, 95) / 1000,
    percentile(values, counts, total, 99) / 1000, total > 0 and sum / total / 1000 or 0,
    max / 1000, tostring(corrected), latency:percentile(99) / 1000,
    e.status, e.connect, e.read, e.write, e.timeout
  ))
  local pairs_out = {}
  for k, v in ipairs(values) do
    if counts[k] > 0 then
      pairs_out[#pairs_out + 1] = string.format("%d:%d", v, counts[k])
    end
  end
  io.write("WRK_HISTOGRAM " .. table.concat(pairs_out, ",") .. "\n")
end
