-- wrk scenario `batch`: a batch of 50 creates (see common.lua).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = bench.only("batch")
