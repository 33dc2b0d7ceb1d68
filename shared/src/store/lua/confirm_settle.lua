-- confirm_settle.lua: apply the outcome of one batchgetenvid call to the entries it checked.
-- Fenced: an entry whose lease record is not the token ARGV[5] (its lease expired and another
-- watcher took it) is stale and nothing is written for it.
-- KEYS[1..7] see confirm_lib.lua
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] fence   ARGV[6] number of entries, then per entry: id, action, and
--           action "b" (bound): batch id, "env/appid", share.bound event JSON
--           action "u" (window over): batch id, "env/appid", share.unconfirmed event JSON
--           (the pair's result row, if still on record and accepted, becomes bound or
--           unconfirmed)
--           action "r" (not yet): next check ms, updated info JSON
-- returns: {applied, stale, {batch ids confirmed by this call}}
-- Cost: O(log n) per entry, one XADD per bound/unconfirmed entry.
local fence = ARGV[5]
local ACCEPTED = { a = true }
local n = tonumber(ARGV[6])
local i = 7
local applied, stale = 0, 0
local touched, order = {}, {}
for _ = 1, n do
  local id, action = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', K_LEASE, id) ~= fence then
    stale = stale + 1
  elseif action == 'r' then
    redis.call('ZADD', K_CONFIRM, ARGV[i + 2], id)
    redis.call('HSET', K_INFO, id, ARGV[i + 3])
    redis.call('HDEL', K_LEASE, id)
    applied = applied + 1
  else
    local batch = ARGV[i + 2]
    local field = 'bound'
    if action == 'b' then
      xadd('share.bound', ARGV[i + 4])
    else
      xadd('share.unconfirmed', ARGV[i + 4])
      field = 'unconfirmed'
    end
    restate(batch, ARGV[i + 3], ACCEPTED, string.sub(field, 1, 1))
    redis.call('ZREM', K_CONFIRM, id)
    redis.call('HDEL', K_INFO, id)
    redis.call('HDEL', K_LEASE, id)
    -- A batch whose record expired (ENVSHARE_RESULTS_TTL) is not brought back.
    if redis.call('EXISTS', batch_key(batch)) == 1 then
      redis.call('HINCRBY', batch_key(batch), field, 1)
    end
    if not touched[batch] then
      touched[batch] = true
      order[#order + 1] = batch
    end
    applied = applied + 1
  end
  i = i + (action == 'r' and 4 or 5)
end
results_flush()
local confirmed = {}
for _, batch in ipairs(order) do
  if maybe_confirm(batch) then
    confirmed[#confirmed + 1] = batch
  end
end
trim_events()
return { applied, stale, confirmed }
