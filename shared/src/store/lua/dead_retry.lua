-- dead_retry.lua: give dead jobs another run: generation + 1 (new event ids), attempts reset,
-- back to ready, dedupe pairs taken again, result rows pending again. The batch's done_jobs and failed go back down for each
-- job; a batch that already emitted batch.completed never emits it again.
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] dedupe window (ms)   ARGV[6..] job ids (<= 1000)
-- returns: number of dead jobs moved to ready (ids not dead are ignored)
-- The generation is written to the job's state record ("0/gen"); the payload is never rewritten.
-- A dead job without a generation in its record counts on from its payload's "gen".
local window_end = int(NOW + tonumber(ARGV[5]))
local ids = argv_ids(6, #ARGV - 5, 1)
local FAILED = { f = true }
if #ids == 0 then
  return 0
end
local died = redis.call('ZMSCORE', K_DEAD, unpack(ids))
local payloads = redis.call('HMGET', K_JOBS, unpack(ids))
local states = redis.call('HMGET', K_STATE, unpack(ids))
local moved, sset, ready, dd, orphans = {}, {}, {}, {}, {}
for i, id in ipairs(ids) do
  if died[i] then
    local raw = payloads[i]
    if raw then
      local p = cjson.decode(raw)
      local _, _, g = parse_state(states[i])
      g = g or tonumber(p.gen) or 0
      moved[#moved + 1] = id
      sset[#sset + 1] = id
      sset[#sset + 1] = waiting(0, g + 1)
      ready[#ready + 1] = NOW_S
      ready[#ready + 1] = id
      for _, appid in ipairs(p.appids) do
        dd[#dd + 1] = window_end
        dd[#dd + 1] = dedupe_member(p, appid)
        restate(p.batch, p.env .. '/' .. appid, FAILED, 'p')
      end
      bump_batch(p.batch, -1, 0, -#p.appids)
    else
      orphans[#orphans + 1] = id
    end
  end
end
if #orphans > 0 then
  redis.call('ZREM', K_DEAD, unpack(orphans))
  redis.call('HDEL', K_DEAD_INFO, unpack(orphans))
  redis.call('HDEL', K_STATE, unpack(orphans))
end
if #moved > 0 then
  chunked('HSET', K_STATE, sset, 2)
  zadd(K_READY, ready)
  chunked('ZREM', K_DEAD, moved, 1)
  chunked('HDEL', K_DEAD_INFO, moved, 1)
  zadd(K_DEDUPE, dd)
  redis.call('HINCRBY', K_STATS, 'dead_retried', #moved)
  flush_batches()
  redis.call('PUBLISH', K_WAKE, '1')
end
return #moved
