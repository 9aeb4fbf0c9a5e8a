-- wrk scenario `tags` (see common.lua).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = bench.only("tags")
