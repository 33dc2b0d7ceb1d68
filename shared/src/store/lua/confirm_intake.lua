-- confirm_intake.lua: take events read by the confirmation consumer group into the schedule,
-- and ack them in the same script, so an event is scheduled exactly when its ack is applied.
-- KEYS[1..5] see confirm_lib.lua
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] consumer group   ARGV[6] number of entries, then per entry:
--         stream entry id, kind, and
--           kind "a" (share.accepted): schedule entry id, first check ms, info JSON
--           kind "c" (batch.completed): batch id
--           kind "-" (anything else): nothing
-- An entry whose XACK acks nothing was already taken in by another consumer (claimed from a
-- stalled one): it is skipped, so a slow consumer cannot schedule it twice.
-- returns: {entries scheduled, {batch ids confirmed by this call}}
-- Cost: per entry one XACK, plus HSETNX + ZADD per accepted appid.
local group = ARGV[5]
local n = tonumber(ARGV[6])
local i = 7
local added, confirmed = 0, {}
for _ = 1, n do
  local entry, kind = ARGV[i], ARGV[i + 1]
  local mine = redis.call('XACK', K_EVENTS, group, entry) == 1
  if kind == 'a' then
    if mine and redis.call('HSETNX', K_INFO, ARGV[i + 2], ARGV[i + 4]) == 1 then
      redis.call('ZADD', K_CONFIRM, ARGV[i + 3], ARGV[i + 2])
      added = added + 1
    end
    i = i + 5
  elseif kind == 'c' then
    if mine and maybe_confirm(ARGV[i + 2]) then
      confirmed[#confirmed + 1] = ARGV[i + 2]
    end
    i = i + 3
  else
    i = i + 2
  end
end
trim_events()
return { added, confirmed }
