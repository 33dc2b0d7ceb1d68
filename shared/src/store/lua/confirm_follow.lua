-- confirm_follow.lua: whether the confirmation watchers must read the events stream.
-- complete.lua schedules the appids it accepts itself, and counts its jobs twice in the stats,
-- as `completed` and as `completed_direct`; workers of earlier versions (and a queue set up
-- without `confirm_first`) count only `completed` and leave scheduling to the stream intake.
-- So `completed - completed_direct` grows only when such a worker writes share.accepted events.
-- While it is what it was when the intake last had read the whole stream, nothing needs
-- reading: the group is moved to the end of the stream in this same step, so no event of an
-- earlier worker can be passed over.
--
-- Moving the group passes over every event since the last check, the batch.completed of an
-- earlier worker's bury, reap or cancel too: those scripts did not check batch.confirmed, which
-- the intake did when it read batch.completed back. So whenever this queue has had such
-- workers (the difference is not 0), each check that finds nothing to read also sweeps a slice
-- of the batches on record and emits batch.confirmed for any that is completed with every
-- accepted appid settled and not confirmed yet (guarded by its `confirmed` field, as
-- everywhere). The sweep goes on from where the last one stopped (KEYS[9]) and starts over
-- after the last batch.
-- KEYS[1..9] see confirm_lib.lua
-- ARGV[1..4] now (ms), now ISO-8601, key prefix, events MAXLEN (see prelude.lua)
-- ARGV[5] consumer group
-- returns: {1, {batch ids confirmed by the sweep}} nothing to read (the group is at the end of
--          the stream), {0, {}} read the stream
-- Cost: O(1) commands (O(number of groups) for XINFO GROUPS); a sweep adds one ZRANGE and one
-- HMGET per batch, at most SWEEP_SLICE.
local SWEEP_SLICE = 500
local group = ARGV[5]
local s = redis.call('HMGET', K_STATS, 'completed', 'completed_direct')
local earlier = int((tonumber(s[1] or 0) or 0) - (tonumber(s[2] or 0) or 0))

local function sweep()
  local confirmed = {}
  if earlier == '0' then
    return confirmed
  end
  local from = tonumber(redis.call('GET', K_SWEEP) or 0) or 0
  local ids = redis.call('ZRANGE', K_BATCHES, from, from + SWEEP_SLICE - 1)
  local next_from = #ids < SWEEP_SLICE and 0 or from + #ids
  if next_from ~= from then
    redis.call('SET', K_SWEEP, next_from)
  end
  for _, id in ipairs(ids) do
    if maybe_confirm(id) then
      confirmed[#confirmed + 1] = id
    end
  end
  trim_events()
  return confirmed
end
local caught_up = redis.call('GET', K_CAUGHT_UP) or '0'
if redis.call('EXISTS', K_EVENTS) == 0 then
  -- No events at all: nothing is unread.
  if earlier ~= caught_up then
    redis.call('SET', K_CAUGHT_UP, earlier)
  end
  return { 1, sweep() }
end
local found, lag, read = false, nil, nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', K_EVENTS)) do
  local f = {}
  for j = 1, #g, 2 do
    f[g[j]] = g[j + 1]
  end
  if f['name'] == group then
    found, lag, read = true, f['lag'], f['entries-read']
  end
end
if earlier ~= caught_up then
  -- Earlier workers wrote events since the intake last caught up: read until it has been
  -- delivered everything (lag 0; what it was delivered and has not acked yet stays pending).
  if not found or lag ~= 0 then
    return { 0, {} }
  end
  redis.call('SET', K_CAUGHT_UP, earlier)
end
if found and lag == 0 then
  return { 1, sweep() }
end
-- Keep the group's count of entries read exact, so its lag (the intake-lag gauge) stays known.
local added
if lag and read then
  added = read + lag
else
  local info = redis.call('XINFO', 'STREAM', K_EVENTS)
  for j = 1, #info, 2 do
    if info[j] == 'entries-added' then
      added = info[j + 1]
    end
  end
end
if found then
  redis.call('XGROUP', 'SETID', K_EVENTS, group, '$', 'ENTRIESREAD', added)
else
  redis.call('XGROUP', 'CREATE', K_EVENTS, group, '$', 'ENTRIESREAD', added)
end
return { 1, sweep() }
