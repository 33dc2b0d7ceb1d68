-- enqueue.lua: add a slice of new jobs, skipping (env, appid) pairs inside their dedupe window.
-- KEYS[1..15] the queue's keys, see lib.lua (jobs, ready, scheduled, dedupe, batches, stats, wake
--             are written)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] force: "1" ignores the dedupe window (the window is still refreshed)
-- ARGV[6] dedupe window (ms)
-- ARGV[7] trim: at most this many expired dedupe members are removed by this call
-- ARGV[8] number of jobs, then per job:
--         id, run_at_ms ("0" = now), batch id, env, number of appids, appids...
--         (ids, envs, batch ids and appids are validated in Rust: no characters needing JSON
--         escapes, so the payload is built by concatenation instead of cjson)
-- returns: {jobs created, appids enqueued, pairs skipped, {1-based indexes of jobs not created
--          because every pair was a duplicate}}
-- Cost: O(log n) per pair; the caller keeps a slice to a few hundred jobs.
local force = ARGV[5] == '1'
local window_end = int(NOW + tonumber(ARGV[6]))
local trim = tonumber(ARGV[7])
local n = tonumber(ARGV[8])

-- Bounded trim of expired dedupe members: find the trim-th expired score and remove below it.
local nth = redis.call('ZRANGEBYSCORE', K_DEDUPE, '-inf', NOW_S, 'WITHSCORES', 'LIMIT', trim - 1, 1)
if #nth > 0 then
  redis.call('ZREMRANGEBYSCORE', K_DEDUPE, '-inf', '(' .. nth[2])
else
  redis.call('ZREMRANGEBYSCORE', K_DEDUPE, '-inf', NOW_S)
end

local jobs, pairs_ = {}, {}
local i = 9
for j = 1, n do
  local na = tonumber(ARGV[i + 4])
  jobs[j] = { i, na }
  for k = 1, na do
    pairs_[#pairs_ + 1] = ARGV[i + 3] .. '/' .. ARGV[i + 4 + k]
  end
  i = i + 5 + na
end

local scores = {}
if not force and #pairs_ > 0 then
  scores = chunked_get('ZMSCORE', K_DEDUPE, pairs_)
end

local seen = {}
local hset, ready, sched, dd, not_created = {}, {}, {}, {}, {}
local created, kept_total, skipped = 0, 0, 0
local batch_jobs, batch_appids, batch_list = {}, {}, {}
local p = 0
for j = 1, n do
  local at, na = jobs[j][1], jobs[j][2]
  local id, run_at, batch, env = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2], ARGV[at + 3]
  local kept = {}
  for k = 1, na do
    p = p + 1
    local pair = pairs_[p]
    local s = scores[p]
    if seen[pair] or (s and tonumber(s) > NOW) then
      skipped = skipped + 1
    else
      seen[pair] = true
      kept[#kept + 1] = ARGV[at + 4 + k]
      dd[#dd + 1] = window_end
      dd[#dd + 1] = pair
    end
  end
  if #kept == 0 then
    not_created[#not_created + 1] = j
  else
    created = created + 1
    kept_total = kept_total + #kept
    hset[#hset + 1] = id
    hset[#hset + 1] = '{"env":"' .. env .. '","appids":["' .. table.concat(kept, '","') ..
      '"],"batch":"' .. batch .. '","gen":0,"created_at":' .. NOW_S .. '}'
    if run_at > NOW then
      sched[#sched + 1] = int(run_at)
      sched[#sched + 1] = id
    else
      ready[#ready + 1] = NOW_S
      ready[#ready + 1] = id
    end
    if not batch_jobs[batch] then
      batch_jobs[batch] = 0
      batch_appids[batch] = 0
      batch_list[#batch_list + 1] = batch
    end
    batch_jobs[batch] = batch_jobs[batch] + 1
    batch_appids[batch] = batch_appids[batch] + #kept
  end
end

if created > 0 then
  chunked('HSET', K_JOBS, hset, 2)
  if #ready > 0 then
    chunked('ZADD', K_READY, ready, 2)
  end
  if #sched > 0 then
    chunked('ZADD', K_SCHED, sched, 2)
  end
  chunked('ZADD', K_DEDUPE, dd, 2)
  for _, b in ipairs(batch_list) do
    local key = PREFIX .. 'batch:' .. b
    redis.call('HINCRBY', key, 'jobs', batch_jobs[b])
    redis.call('HINCRBY', key, 'appids', batch_appids[b])
    redis.call('HSETNX', key, 'created_at', NOW_S)
    redis.call('ZADD', K_BATCHES, 'NX', NOW_S, b)
  end
  redis.call('HINCRBY', K_STATS, 'enqueued', created)
  if #ready > 0 then
    redis.call('PUBLISH', K_WAKE, '1')
  end
end
return { created, kept_total, skipped, not_created }
