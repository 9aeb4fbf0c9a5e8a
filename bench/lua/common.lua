-- Shared by every scenario script: the run's data, request builders, counters, and the
-- summary line `done()` prints for bench/wrk.py.
--
-- BENCH_DATA names the data file bench/wrk.py generates for the run: the user count, tasks
-- per user, the seeded-id formula's constants, the batch size, and each user's token, tag
-- names and changes-feed cursors (at the user's latest change, and 100 task changes back).
-- Every request picks a random user; get/update/toggle pick one of that user's seeded
-- tasks, named by the same formula the seeding and pgbench use (bench/datasets.py).

local data = dofile(os.getenv("BENCH_DATA"))

local VERBS = { "Buy", "Call", "Email", "Fix", "Review", "Plan", "Book", "Pay", "Clean",
                "Write", "Schedule", "Return", "Order", "Prepare", "Renew", "Check" }
local OBJECTS = { "milk", "dentist", "report", "invoice", "tickets", "car", "garden",
                  "taxes", "passport", "groceries", "insurance", "laundry", "budget", "bike",
                  "newsletter", "slides", "kitchen" }
-- Words that occur in seeded titles and descriptions: a search finds some tasks, not all.
local SEARCHES = { "report", "invoice", "tickets", "garden", "taxes", "groceries", "budget",
                   "slides", "kitchen", "bike", "milk", "passport" }
local PRIORITIES = { "High", "Medium", "Medium", "Medium", "Low" }

local tags = {}
for u, names in ipairs(data.tags) do
  local list = {}
  for name in string.gmatch(names, "[^,]+") do list[#list + 1] = name end
  tags[u] = list
end

local function pick(list) return list[math.random(1, #list)] end

local function random_user() return math.random(1, data.users) end

local function user_path(u) return "/api/bench-user-" .. u end

local function task_id(u, i)
  local id = data.id
  local k = (u - 1) * data.tasks_per_user + i
  return string.format("%d-0000-4000-8000-%d",
                       id.head_base + (k * id.multiplier + id.offset) % id.spread,
                       id.tail_base + k)
end

local function random_task(u) return task_id(u, math.random(1, data.tasks_per_user)) end

local function headers(u, json)
  local h = { ["Authorization"] = "Bearer " .. data.tokens[u] }
  if json then h["Content-Type"] = "application/json" end
  return h
end

-- Up to `n` distinct tag names of user `u`, as a JSON array.
local function tag_array(u, n)
  local names, chosen, seen = tags[u] or {}, {}, {}
  for _ = 1, n do
    local name = pick(names)
    if name and not seen[name] then
      seen[name] = true
      chosen[#chosen + 1] = '"' .. name .. '"'
    end
  end
  return "[" .. table.concat(chosen, ",") .. "]"
end

local function title()
  return pick(VERBS) .. " " .. pick(OBJECTS) .. " #" .. math.random(1, 99999)
end

local function due_date()
  if math.random() < 0.3 then return "null" end
  return '"' .. os.date("!%Y-%m-%d", os.time() + math.random(-60, 60) * 86400) .. '"'
end

-- A create's body: title, priority, due date, 0-3 of the user's tags.
local function create_body(u)
  return string.format('{"title":"%s","priority":"%s","due_date":%s,"tags":%s}',
                       title(), pick(PRIORITIES), due_date(), tag_array(u, math.random(0, 3)))
end

local builders = {}

function builders.list()
  local u = random_user()
  return wrk.format("GET", user_path(u) .. "/tasks", headers(u))
end

function builders.filtered()
  local u = random_user()
  local query = "?search=" .. pick(SEARCHES) .. "&priority=" .. pick(PRIORITIES)
                .. "&sort_by=due_date&sort_direction=asc"
  return wrk.format("GET", user_path(u) .. "/tasks" .. query, headers(u))
end

function builders.get()
  local u = random_user()
  return wrk.format("GET", user_path(u) .. "/tasks/" .. random_task(u), headers(u))
end

function builders.tags()
  local u = random_user()
  return wrk.format("GET", user_path(u) .. "/tags", headers(u))
end

-- The list again, as a client that already has it polls: `If-None-Match: *` matches any
-- current list, so the service answers 304 from the user's change number alone.
function builders.poll()
  local u = random_user()
  local h = headers(u)
  h["If-None-Match"] = "*"
  return wrk.format("GET", user_path(u) .. "/tasks", h)
end

-- The changes feed at the user's latest change: nothing new (an empty answer).
function builders.changes()
  local u = random_user()
  return wrk.format("GET", user_path(u) .. "/changes?cursor=" .. data.cursors[u], headers(u))
end

-- The changes feed 100 task changes back: an answer of 100 tasks.
function builders.changes100()
  local u = random_user()
  return wrk.format("GET", user_path(u) .. "/changes?cursor=" .. data.cursors_behind[u],
                    headers(u))
end

function builders.create()
  local u = random_user()
  return wrk.format("POST", user_path(u) .. "/tasks", headers(u, true), create_body(u))
end

-- `batch_size` creates in one batch, each body like `create`'s.
function builders.batch()
  local u = random_user()
  local operations = {}
  for k = 1, data.batch_size do
    operations[k] = '{"op":"create","task":' .. create_body(u) .. '}'
  end
  return wrk.format("POST", user_path(u) .. "/tasks/batch", headers(u, true),
                    '{"operations":[' .. table.concat(operations, ",") .. ']}')
end

function builders.update()
  local u = random_user()
  local body = string.format('{"title":"%s","priority":"%s","tags":%s}',
                             title(), pick(PRIORITIES), tag_array(u, math.random(1, 3)))
  return wrk.format("PATCH", user_path(u) .. "/tasks/" .. random_task(u), headers(u, true), body)
end

function builders.toggle()
  local u = random_user()
  return wrk.format("PATCH", user_path(u) .. "/tasks/" .. random_task(u) .. "/complete",
                    headers(u))
end

-- The status a scenario's requests must get, where it is not any 2xx; any other counts as
-- an error (`unexpected`). A poll answered 200 did not measure what `poll` is for.
local EXPECTED = { poll = 304 }

bench = {}

-- A request() that always sends operation `name`.
function bench.only(name)
  local build = builders[name]
  expected_status = EXPECTED[name]
  return function()
    sent[name] = (sent[name] or 0) + 1
    return build()
  end
end

-- A request() that sends operations at random in proportion to their weights:
-- { {"list", 25}, {"get", 20}, ... }.
function bench.weighted(weights)
  local total = 0
  for _, entry in ipairs(weights) do total = total + entry[2] end
  return function()
    local r = math.random() * total
    for _, entry in ipairs(weights) do
      r = r - entry[2]
      if r < 0 then
        sent[entry[1]] = (sent[entry[1]] or 0) + 1
        return builders[entry[1]]()
      end
    end
    local last = weights[#weights][1]
    sent[last] = (sent[last] or 0) + 1
    return builders[last]()
  end
end

-- Per-thread counters (globals of each thread's Lua state, read back in done()).
local threads = {}

function setup(thread)
  thread:set("thread_number", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_number * 7919)
  statuses, sent, non2xx, unexpected = {}, {}, 0, 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local success = status >= 200 and status <= 299
  if not success then non2xx = non2xx + 1 end
  if expected_status then success = status == expected_status end
  if not success then unexpected = unexpected + 1 end
end

local function json_counts(counts)
  local parts = {}
  for key, value in pairs(counts) do
    parts[#parts + 1] = string.format('"%s":%d', tostring(key), value)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function add_counts(total, counts)
  for key, value in pairs(counts or {}) do total[key] = (total[key] or 0) + value end
end

function done(summary, latency, requests)
  local all_statuses, all_sent, all_non2xx, all_unexpected = {}, {}, 0, 0
  for _, thread in ipairs(threads) do
    add_counts(all_statuses, thread:get("statuses"))
    add_counts(all_sent, thread:get("sent"))
    all_non2xx = all_non2xx + (thread:get("non2xx") or 0)
    all_unexpected = all_unexpected + (thread:get("unexpected") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,"non2xx":%d,' ..
    '"unexpected":%d,"expected":%s,"statuses":%s,"sent":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.timeout, e.status, all_non2xx,
    all_unexpected, expected_status and tostring(expected_status) or "null",
    json_counts(all_statuses), json_counts(all_sent)))
end
