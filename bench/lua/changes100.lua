-- wrk scenario `changes100`: the changes feed 100 task changes back (see common.lua).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = bench.only("changes100")
