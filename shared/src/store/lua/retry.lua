-- retry.lua: put leased jobs back in scheduled to run again at a given time. A transient
-- failure keeps the attempt counted; a deferral (quota pause, token misconfiguration: the job
-- never ran) refunds it. No events: a retry is not a result. Publishes on the wake channel, so
-- idle workers learn the new due time.
-- Fenced: a job whose current fencing token differs is stale and nothing is written for it.
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] number of jobs (<= 500), then per job: id, fence, run_at_ms, refund ("1" or "0")
-- returns: {applied, {stale job ids}}
local n = tonumber(ARGV[5])
local ids = argv_ids(6, n, 4)
local states = chunked_get('HMGET', K_STATE, ids)
local moved, sched, sset, stale = {}, {}, {}, {}
local retried, deferred = 0, 0
for r = 1, n do
  local at = 2 + 4 * r
  local id = ARGV[at]
  if applies(states[r], ARGV[at + 1], id) then
    local a, _, g = parse_state(states[r])
    moved[#moved + 1] = id
    sched[#sched + 1] = ARGV[at + 2]
    sched[#sched + 1] = id
    if ARGV[at + 3] == '1' then
      a = math.max(a - 1, 0)
      deferred = deferred + 1
    else
      retried = retried + 1
    end
    sset[#sset + 1] = id
    sset[#sset + 1] = waiting(a, g)
  else
    stale[#stale + 1] = id
  end
end
if #moved > 0 then
  unlease(moved, K_SCHED, sched, sset)
  if retried > 0 then
    redis.call('HINCRBY', K_STATS, 'retries', retried)
  end
  if deferred > 0 then
    redis.call('HINCRBY', K_STATS, 'deferred', deferred)
  end
  -- Idle workers sleep until the earliest due time they last saw: a retry due earlier than
  -- that must make them look again.
  redis.call('PUBLISH', K_WAKE, '1')
end
return { #moved, stale }
