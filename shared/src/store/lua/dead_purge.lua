-- dead_purge.lua: delete dead jobs for good (payload, state, dead info). Batch counters keep
-- them counted as ended and failed.
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5..] job ids (<= 1000)
-- returns: number of dead jobs purged (ids not dead are ignored)
local ids = argv_ids(5, #ARGV - 4, 1)
if #ids == 0 then
  return 0
end
local died = redis.call('ZMSCORE', K_DEAD, unpack(ids))
local gone = {}
for i, id in ipairs(ids) do
  if died[i] then
    gone[#gone + 1] = id
  end
end
if #gone > 0 then
  redis.call('ZREM', K_DEAD, unpack(gone))
  redis.call('HDEL', K_DEAD_INFO, unpack(gone))
  redis.call('HDEL', K_JOBS, unpack(gone))
  redis.call('HDEL', K_STATE, unpack(gone))
  redis.call('HINCRBY', K_STATS, 'dead_purged', #gone)
end
return #gone
