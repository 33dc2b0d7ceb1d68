-- webhook_revive.lua: send dead deliveries of one endpoint again: each goes back to the schedule,
-- due now, with its record reset (attempts 0, max age counted from now).
-- KEYS[1..9] see webhook_lib.lua (one endpoint)
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] number of entries, then per entry: event id, reset record JSON
-- An id that is not dead (any more) is skipped.
-- returns: entries revived
-- Cost: O(log n) per entry.
local n = tonumber(ARGV[5])
local revived = 0
local i = 6
for _ = 1, n do
  local id = ARGV[i]
  if redis.call('ZREM', K_DEAD, id) == 1 then
    redis.call('HSET', K_INFO, id, ARGV[i + 1])
    redis.call('ZADD', K_DUE, NOW_S, id)
    redis.call('ZADD', K_PENDING, NOW_S, id)
    revived = revived + 1
  end
  i = i + 2
end
return revived
