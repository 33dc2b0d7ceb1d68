-- webhook_intake.lua: take events read by the webhook consumer group into the delivery schedule
-- of every endpoint, and ack them in the same script, so an event is scheduled exactly when its
-- ack is applied.
-- KEYS[1..4], then 5 keys per endpoint: see webhook_lib.lua
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] consumer group   ARGV[6] number of endpoints   ARGV[7] number of entries, then per
--         entry: stream entry id, event id ('' for an entry to ack only), when the event was
--         written (ms), delivery record JSON
-- An entry whose XACK acks nothing was already taken in by another consumer (claimed from a
-- stalled one): it is skipped, so a slow consumer cannot schedule it twice. An event id already
-- scheduled for an endpoint is not scheduled again.
-- returns: deliveries scheduled (entries x endpoints)
-- Cost: per entry one XACK, plus HSETNX + two ZADD per endpoint.
local group = ARGV[5]
local endpoints = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local added = 0
local i = 8
for _ = 1, n do
  local entry, id, written, record = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('XACK', K_EVENTS, group, entry) == 1 and id ~= '' then
    for e = 0, endpoints - 1 do
      local base = 4 + e * 5
      if redis.call('HSETNX', KEYS[base + 2], id, record) == 1 then
        redis.call('ZADD', KEYS[base + 1], NOW_S, id)
        redis.call('ZADD', KEYS[base + 5], written, id)
        added = added + 1
      end
    end
  end
  i = i + 4
end
return added
