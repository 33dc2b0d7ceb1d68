-- confirm_claim.lua: lease due schedule entries to one watcher: their score becomes the lease
-- deadline (so nobody else takes them until then) and they get one new fencing token.
-- KEYS[1..7] see confirm_lib.lua
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] lease (ms)   ARGV[6] max entries (<= 1000)
-- returns: {fence, id1, info1, id2, info2, …} (just {fence} when nothing is due)
-- Cost: O(log n) per entry taken.
local due = redis.call('ZRANGEBYSCORE', K_CONFIRM, '-inf', NOW_S, 'LIMIT', 0, tonumber(ARGV[6]))
local fence = redis.call('INCR', K_FENCE)
local out = { fence }
if #due == 0 then
  return out
end
local infos = redis.call('HMGET', K_INFO, unpack(due))
local deadline = NOW + tonumber(ARGV[5])
local f = tostring(fence)
for j, id in ipairs(due) do
  if infos[j] then
    redis.call('ZADD', K_CONFIRM, deadline, id)
    redis.call('HSET', K_LEASE, id, f)
    out[#out + 1] = id
    out[#out + 1] = infos[j]
  else
    -- No details: nothing could ever settle it.
    redis.call('ZREM', K_CONFIRM, id)
  end
end
return out
