-- webhook_settle.lua: apply the outcomes of delivery attempts to one endpoint's records.
-- Fenced: a record whose lease is not the entry's token (its lease expired and another worker
-- took it) is stale and nothing is written for it.
-- KEYS[1..9] see webhook_lib.lua (one endpoint)
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] endpoint id   ARGV[6] the endpoint's last error JSON ('' for none)
-- ARGV[7] number of entries, then per entry: event id, fence, action, argument:
--           action "d" (delivered): '' (the record is removed)
--           action "r" (retry): next attempt ms .. ' ' .. updated record JSON
--           action "x" (dead: max age or attempts reached): updated record JSON
-- returns: {applied, stale}
-- Cost: O(log n) per entry.
if ARGV[6] ~= '' then
  redis.call('HSET', K_ERRORS, ARGV[5], ARGV[6])
end
local n = tonumber(ARGV[7])
local i = 8
local applied, stale = 0, 0
for _ = 1, n do
  local id, fence, action, arg = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HGET', K_LEASE, id) ~= fence then
    stale = stale + 1
  else
    redis.call('HDEL', K_LEASE, id)
    if action == 'd' then
      redis.call('ZREM', K_DUE, id)
      redis.call('HDEL', K_INFO, id)
      redis.call('ZREM', K_PENDING, id)
    elseif action == 'r' then
      local sp = string.find(arg, ' ', 1, true)
      redis.call('ZADD', K_DUE, string.sub(arg, 1, sp - 1), id)
      redis.call('HSET', K_INFO, id, string.sub(arg, sp + 1))
    else
      redis.call('ZREM', K_DUE, id)
      redis.call('ZREM', K_PENDING, id)
      redis.call('HSET', K_INFO, id, arg)
      redis.call('ZADD', K_DEAD, NOW_S, id)
    end
    applied = applied + 1
  end
  i = i + 4
end
return { applied, stale }
