-- wrk scenario `changes`: the changes feed at the latest change, nothing new (see common.lua).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = bench.only("changes")
