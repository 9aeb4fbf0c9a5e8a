-- wrk scenario `users`: `mixed`'s requests, each connection a person who pauses between
-- requests (think time uniform in BENCH_THINK_MS "min,max" milliseconds; see common.lua).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = bench.weighted({
  { "list", 25 }, { "filtered", 15 }, { "get", 20 }, { "tags", 10 },  -- reads: 70
  { "create", 10 }, { "update", 10 }, { "toggle", 10 },               -- writes: 30
})

local low, high = string.match(os.getenv("BENCH_THINK_MS") or "", "^(%d+),(%d+)$")
assert(low, "BENCH_THINK_MS must be MIN,MAX milliseconds")
low, high = tonumber(low), tonumber(high)

-- wrk waits this long before each request of a connection, the first included; the wait
-- is not part of the measured latency.
function delay()
  return math.random(low, high)
end
