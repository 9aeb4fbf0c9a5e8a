-- wrk scenario `poll`: the list with `If-None-Match: *`, answered 304 (see common.lua).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = bench.only("poll")
