-- claim.lua: reap expired leases, promote due jobs, then lease up to N ready jobs (FIFO).
-- KEYS[1..15] the queue's keys, see lib.lua (jobs, ready, scheduled, running, state, fence, dead,
--             dead:info, events, dedupe, pause, workers, stats, batches, wake)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] worker id
-- ARGV[6] max jobs to lease (<= 1000)
-- ARGV[7] lease (ms)
-- ARGV[8] max attempts (tries in all)
-- ARGV[9] promote slice, ARGV[10] reap slice (<= 1000 each)
-- returns: {"paused", until_ms, reason, {completed batch ids}}
--       or {"jobs", {id, fence, attempt, payload, ...}, {completed batch ids}}
--          (completed batch ids: batches a lease_expired reap just finished)
-- Cost: O(log n) per job; at most max + promote + reap slice jobs touched.
local worker, max, lease = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZADD', K_WORKERS, NOW_S, worker)
reap(tonumber(ARGV[10]), tonumber(ARGV[8]))
promote(tonumber(ARGV[9]))
local completed = flush_batches()

local pause = redis.call('HMGET', K_PAUSE, 'until', 'reason')
if pause[1] and tonumber(pause[1]) > NOW then
  return { 'paused', pause[1], pause[2] or '', completed }
end

local popped = redis.call('ZPOPMIN', K_READY, max)
local n = #popped / 2
if n == 0 then
  return { 'jobs', {}, completed }
end
local last = redis.call('INCRBY', K_FENCE, n)
local ids = {}
for i = 1, n do
  ids[i] = popped[2 * i - 1]
end
pin_state()
local states = redis.call('HMGET', K_STATE, unpack(ids))
local payloads = redis.call('HMGET', K_JOBS, unpack(ids))
local deadline = int(NOW + lease)
local sset, run, out, orphans = {}, {}, {}, {}
for i, id in ipairs(ids) do
  if payloads[i] then
    local a = parse_state(states[i]) + 1
    local f = int(last - n + i)
    sset[#sset + 1] = id
    sset[#sset + 1] = int(a) .. ':' .. f .. ':' .. worker
    run[#run + 1] = deadline
    run[#run + 1] = id
    out[#out + 1] = id
    out[#out + 1] = f
    out[#out + 1] = int(a)
    out[#out + 1] = payloads[i]
  else
    -- A ready id without a payload cannot run; drop its state rather than loop on it.
    orphans[#orphans + 1] = id
  end
end
if #run > 0 then
  chunked('HSET', K_STATE, sset, 2)
  chunked('ZADD', K_RUNNING, run, 2)
  redis.call('HINCRBY', K_STATS, 'claimed', #run / 2)
end
if #orphans > 0 then
  chunked('HDEL', K_STATE, orphans, 1)
end
return { 'jobs', out, completed }
