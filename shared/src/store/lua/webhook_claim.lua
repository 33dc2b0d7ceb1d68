-- webhook_claim.lua: lease due deliveries of one endpoint to one worker: their score becomes the
-- lease deadline (so nobody else takes them until then) and they get one new fencing token.
-- KEYS[1..9] see webhook_lib.lua (one endpoint)
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] lease (ms)   ARGV[6] max entries (<= 1000)
-- returns: {fence, id1, record1, id2, record2, ...} (just {fence} when nothing is due)
-- Cost: O(log n) per entry taken.
local due = redis.call('ZRANGEBYSCORE', K_DUE, '-inf', NOW_S, 'LIMIT', 0, tonumber(ARGV[6]))
local fence = redis.call('INCR', K_FENCE)
local out = { fence }
if #due == 0 then
  return out
end
local records = redis.call('HMGET', K_INFO, unpack(due))
local deadline = NOW + tonumber(ARGV[5])
local f = tostring(fence)
for j, id in ipairs(due) do
  if records[j] then
    redis.call('ZADD', K_DUE, deadline, id)
    redis.call('HSET', K_LEASE, id, f)
    out[#out + 1] = id
    out[#out + 1] = records[j]
  else
    -- No record: nothing could ever deliver it.
    redis.call('ZREM', K_DUE, id)
    redis.call('ZREM', K_PENDING, id)
  end
end
return out
