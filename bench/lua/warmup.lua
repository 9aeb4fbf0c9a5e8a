-- Warm-up before the measurements (pools, caches): reads only, so the data stays as seeded.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = bench.weighted({ { "list", 1 }, { "filtered", 1 }, { "get", 1 }, { "tags", 1 } })
