-- confirm_intake.lua: take events read by the confirmation consumer group into the schedule,
-- and ack them in the same script, so an event is scheduled exactly when its ack is applied.
-- KEYS[1..7] see confirm_lib.lua
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] consumer group   ARGV[6] consumer   ARGV[7] number of entries (<= 1000)
-- ARGV[8] the least and ARGV[9] the greatest entry id of them (the XPENDING range), then per
--         entry:
--         stream entry id, kind, and
--           kind "a" (share.accepted): schedule entry id, first check ms, info JSON, batch id,
--                                      "env/appid" (its result row)
--           kind "c" (batch.completed): batch id
--           kind "-" (anything else): nothing
-- Only entries still pending for this consumer are taken in: one another consumer claimed
-- from this one (thinking it stalled) is left to that one, so a slow consumer cannot schedule
-- it twice; and an entry already in the schedule is not scheduled again, nor one already
-- settled: its pair's result row is bound or unconfirmed (complete.lua scheduled it, and a check
-- settled it before this intake, lagging behind, read its event).
-- returns: {entries scheduled, {batch ids confirmed by this call}}
-- Cost: a fixed number of commands per call (XPENDING, XACK, HMGET, HSET, ZADD), whatever the
-- number of entries, plus one HGET (its result row) per share.accepted entry not in the
-- schedule and one HMGET per batch.completed entry.
local group, consumer = ARGV[5], ARGV[6]
local n = tonumber(ARGV[7])
if n == 0 then
  return { 0, {} }
end
local mine = {}
for _, p in ipairs(redis.call('XPENDING', K_EVENTS, group, ARGV[8], ARGV[9], 10000, consumer)) do
  mine[p[1]] = true
end
local acks, sids, infos, dues, rows = {}, {}, {}, {}, {}
local completed = {}
local at = 10
for _ = 1, n do
  local entry, kind = ARGV[at], ARGV[at + 1]
  if mine[entry] then
    mine[entry] = nil
    acks[#acks + 1] = entry
    if kind == 'a' then
      sids[#sids + 1] = ARGV[at + 2]
      dues[#dues + 1] = ARGV[at + 3]
      infos[#infos + 1] = ARGV[at + 4]
      rows[#rows + 1] = at + 5
    elseif kind == 'c' then
      completed[#completed + 1] = ARGV[at + 2]
    end
  end
  if kind == 'a' then
    at = at + 7
  elseif kind == 'c' then
    at = at + 3
  else
    at = at + 2
  end
end
local added, confirmed = 0, {}
if #acks > 0 then
  redis.call('XACK', K_EVENTS, group, unpack(acks))
end
if #sids > 0 then
  local known = redis.call('HMGET', K_INFO, unpack(sids))
  local SETTLED = { b = true, u = true }
  -- Whether entry r's pair has a result row that is bound or unconfirmed.
  local function settled(r)
    local row = redis.call('HGET', results_key(ARGV[rows[r]]), ARGV[rows[r] + 1])
    return row and SETTLED[string.sub(row, 1, 1)]
  end
  local fields, sched, seen = {}, {}, {}
  for r = 1, #sids do
    local sid = sids[r]
    if not known[r] and not seen[sid] and not settled(r) then
      seen[sid] = true
      fields[#fields + 1] = sid
      fields[#fields + 1] = infos[r]
      sched[#sched + 1] = dues[r]
      sched[#sched + 1] = sid
    end
  end
  if #fields > 0 then
    redis.call('HSET', K_INFO, unpack(fields))
    redis.call('ZADD', K_CONFIRM, unpack(sched))
    added = #sched / 2
  end
end
for _, id in ipairs(completed) do
  if maybe_confirm(id) then
    confirmed[#confirmed + 1] = id
  end
end
trim_events()
return { added, confirmed }
