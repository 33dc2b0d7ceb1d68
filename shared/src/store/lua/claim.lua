-- claim.lua: reap expired leases, promote due jobs, then lease up to N ready jobs (FIFO).
-- KEYS[1..15] the queue's keys, see lib.lua (jobs, ready, scheduled, running, state, fence, dead,
--             dead:info, events, dedupe, pause, workers, stats, batches, wake)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] worker id
-- ARGV[6] max jobs to lease (<= 1000)
-- ARGV[7] lease (ms)
-- ARGV[8] max attempts (tries in all)
-- ARGV[9] promote slice, ARGV[10] reap slice (<= 1000 each)
-- ARGV[11] "1": housekeeping first (record the worker as alive, reap expired leases, promote
--          due jobs); "0": skip it (the worker runs it on a timer, not in every claim)
-- returns: {"paused", until_ms, reason, {completed batch ids}}
--       or {"jobs", {id, fence, attempt, gen, payload, ...}, {completed batch ids}, next}
--          (fence, attempt and gen are integer replies; gen 0: the job's state record has no
--          generation, the payload's "gen" holds it)
--          (completed batch ids: batches a lease_expired reap just finished)
--          (next: when fewer than max jobs were ready, the earliest ms at which a scheduled job
--          falls due or a lease runs out, 0 if none: the time an idle worker must look again
--          even if no wake message comes; -1 when max jobs were leased)
-- Cost: O(log n) per job; at most max + promote + reap slice jobs touched. Every redis.call
-- costs a few µs whatever it does, so a claim without housekeeping makes 9 calls, not 13.
local worker, max, lease = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
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
  if s and r then
    return math.min(s, r)
  end
  return s or r or 0
end

-- Small claims (the usual case when jobs wait on the API) pop with ZPOPMIN: one call. Big
-- ones use ZRANGE + ZREMRANGEBYRANK: the same O(log n + m) removal of the m oldest, without
-- formatting every score into a reply string that is thrown away.
local ids
if max <= 64 then
  local popped = redis.call('ZPOPMIN', K_READY, max)
  ids = {}
  for i = 1, #popped, 2 do
    ids[#ids + 1] = popped[i]
  end
else
  ids = redis.call('ZRANGE', K_READY, 0, max - 1)
  if #ids > 0 then
    redis.call('ZREMRANGEBYRANK', K_READY, 0, #ids - 1)
  end
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
local payloads = redis.call('HMGET', K_JOBS, unpack(ids))
local deadline = int(NOW + lease)
local suffix = ':' .. worker
-- Decimal fence strings without a sprintf per job (a sprintf costs more than the rest of the
-- job's claim): fence = hundreds .. two digits, the hundreds formatted once per 100 fences.
local D2 = {}
for d = 0, 99 do
  D2[d] = DIGITS[(d - d % 10) / 10] .. DIGITS[d % 10]
end
local cur_hi, hi_s = -1, ''
local sset, run, out, orphans = {}, {}, {}, {}
local k, o = 0, 0
for i = 1, n do
  local id = ids[i]
  local payload = payloads[i]
  if payload then
    local s = states[i]
    local a, g = 1, 0
    if s then
      local sa, _, sg = parse_state(s)
      a, g = sa + 1, sg or 0
    end
    local f = last - n + i
    local lo = f % 100
    local hi = (f - lo) / 100
    if hi ~= cur_hi then
      cur_hi, hi_s = hi, int(hi)
    end
    local fs = hi > 0 and hi_s .. D2[lo] or int(f)
    sset[k + 1] = id
    if g > 0 then
      sset[k + 2] = fs .. ':' .. small(a) .. '/' .. int(g) .. suffix
    else
      sset[k + 2] = fs .. ':' .. small(a) .. suffix
    end
    run[k + 1] = deadline
    run[k + 2] = id
    k = k + 2
    -- Numbers go back as integer replies: no strings built for them here.
    out[o + 1] = id
    out[o + 2] = f
    out[o + 3] = a
    out[o + 4] = g
    out[o + 5] = payload
    o = o + 5
  else
    -- A ready id without a payload cannot run; drop its state rather than loop on it.
    orphans[#orphans + 1] = id
  end
end
if k > 0 then
  chunked('HSET', K_STATE, sset, 2)
  chunked('ZADD', K_RUNNING, run, 2)
  redis.call('HINCRBY', K_STATS, 'claimed', k / 2)
end
if #orphans > 0 then
  chunked('HDEL', K_STATE, orphans, 1)
end
return { 'jobs', out, completed, n < max and next_due() or -1 }
