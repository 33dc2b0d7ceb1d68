-- drop.lua: forget leased jobs that have no payload. Only a write from outside envshare, or the
-- widening member lib.lua's zadd leaves behind when a script fails halfway, puts such an id in
-- ready; a claim leases it like any job (claim.lua reads no payloads) and the worker, finding
-- no payload, drops it here: its state record and lease go, nothing else is written (there is
-- no batch, appid or event to name). Fenced, and a job whose payload exists is left alone.
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] number of jobs (<= 1000, a claim's most), then per job: id, fence
-- returns: number of jobs dropped
local n = tonumber(ARGV[5])
local ids = argv_ids(6, n, 2)
if n == 0 then
  return 0
end
local states = redis.call('HMGET', K_STATE, unpack(ids))
local payloads = redis.call('HMGET', K_JOBS, unpack(ids))
local gone = {}
for r = 1, n do
  if not payloads[r] and applies(states[r], ARGV[5 + 2 * r], ids[r]) then
    gone[#gone + 1] = ids[r]
  end
end
if #gone > 0 then
  redis.call('HDEL', K_STATE, unpack(gone))
  redis.call('ZREM', K_RUNNING, unpack(gone))
end
return #gone
