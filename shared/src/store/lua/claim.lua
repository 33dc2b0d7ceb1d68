-- claim.lua: reap expired leases, promote due jobs, then lease up to N ready jobs (FIFO).
-- KEYS[1..17] the queue's keys, see lib.lua (jobs, ready, scheduled, running, state, fence, dead,
--             dead:info, events, dedupe, pause, workers, stats, batches, wake)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] worker id
-- ARGV[6] max jobs to lease (1..1000; anything else is brought into that range)
-- ARGV[7] lease (ms)
-- ARGV[8] max attempts (tries in all)
-- ARGV[9] promote slice, ARGV[10] reap slice (<= 1000 each)
-- ARGV[11] "1": housekeeping first (record the worker as alive, reap expired leases, promote
--          due jobs); "0": skip it (the worker runs it on a timer, not in every claim)
-- returns: {"paused", until_ms, reason, {completed batch ids}}
--       or {"jobs", {id, fence, attempt, gen, ...}, {completed batch ids}, next}
--          (fence, attempt and gen are integer replies; gen 0: the job's state record has no
--          generation, the payload's "gen" holds it)
--          (no payloads: the worker reads them with HMGET jobs, a plain command, which costs
--          Redis less than carrying each payload into Lua and back out; an id without one,
--          which only a write from outside or a widening member left behind by lib.lua's zadd
--          can put in ready, is leased like any other and the worker drops it, see drop.lua)
--          (completed batch ids: batches a lease_expired reap just finished)
--          (next: when fewer than max jobs were ready, the earliest ms at which a scheduled job
--          falls due or a lease runs out, 0 if none: the time an idle worker must look again
--          even if no wake message comes; -1 when max jobs were leased)
-- Cost: O(log n) per job; at most max + promote + reap slice jobs touched. Every redis.call
-- costs a few µs whatever it does, so a claim without housekeeping makes 9 calls, not 15.
local worker, max, lease = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
-- ZRANGE 0 (max - 1) with max 0 would be the whole ready set.
max = math.min(math.max(max or 1, 1), 1000)
local completed = {}
if ARGV[11] ~= '0' then
  redis.call('ZADD', K_WORKERS, NOW_S, worker)
  reap(tonumber(ARGV[10]), tonumber(ARGV[8]))
  promote(tonumber(ARGV[9]))
  completed = flush_batches()
end

local pause = redis.call('HMGET', K_PAUSE, 'until', 'reason')
if pause[1] and tonumber(pause[1]) > NOW then
  return { 'paused', pause[1], pause[2] or '', completed }
end

-- The earliest scheduled run-at or lease deadline (ms), 0 if there is none.
local function next_due()
  local s = redis.call('ZRANGE', K_SCHED, 0, 0, 'WITHSCORES')[2]
  local r = redis.call('ZRANGE', K_RUNNING, 0, 0, 'WITHSCORES')[2]
  s, r = tonumber(s), tonumber(r)
  if r == math.huge then
    -- Only the pin (pin_state): no lease runs out.
    r = nil
  end
  if s and r then
    return math.min(s, r)
  end
  return s or r or 0
end

-- The m oldest: ZRANGE + ZREMRANGEBYRANK, O(log n + m). Not ZPOPMIN: its reply formats every
-- score as a double, which for 29 jobs cost 60 µs against 16 µs for these two calls.
local ids = redis.call('ZRANGE', K_READY, 0, max - 1)
if #ids > 0 then
  redis.call('ZREMRANGEBYRANK', K_READY, 0, #ids - 1)
end
local n = #ids
if n == 0 then
  return { 'jobs', {}, completed, next_due() }
end
local last = redis.call('INCRBY', K_FENCE, n)
if ARGV[11] ~= '0' then
  pin_state()
end
local states = redis.call('HMGET', K_STATE, unpack(ids))
local deadline = int(NOW + lease)
local suffix = ':' .. worker
local fence_digits = digits()
local sset, run, out = {}, {}, {}
local k, o = 0, 0
for i = 1, n do
  local id = ids[i]
  local s = states[i]
  local a, g = 1, 0
  if s then
    local sa, _, sg = parse_state(s)
    a, g = sa + 1, sg or 0
  end
  local f = last - n + i
  local fh, fl = fence_digits(f)
  sset[k + 1] = id
  if g > 0 then
    sset[k + 2] = fh .. fl .. ':' .. small(a) .. '/' .. int(g) .. suffix
  else
    sset[k + 2] = fh .. fl .. ':' .. small(a) .. suffix
  end
  run[k + 1] = deadline
  run[k + 2] = id
  k = k + 2
  -- Numbers go back as integer replies: no strings built for them here.
  out[o + 1] = id
  out[o + 2] = f
  out[o + 3] = a
  out[o + 4] = g
  o = o + 4
end
chunked('HSET', K_STATE, sset, 2)
chunked('ZADD', K_RUNNING, run, 2)
redis.call('HINCRBY', K_STATS, 'claimed', n)
return { 'jobs', out, completed, n < max and next_due() or -1 }
