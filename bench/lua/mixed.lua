-- wrk scenario `mixed`: 70 % reads, 30 % writes, each request a random user (see common.lua).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = bench.weighted({
  { "list", 25 }, { "filtered", 15 }, { "get", 20 }, { "tags", 10 },  -- reads: 70
  { "create", 10 }, { "update", 10 }, { "toggle", 10 },               -- writes: 30
})
