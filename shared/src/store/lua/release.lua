-- release.lua: hand leased jobs back to ready without running them (worker shutdown); the
-- attempt is refunded. Fenced: a stale lease is reported and nothing is written for it.
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] number of jobs (<= 500), then per job: id, fence
-- returns: {released, {stale job ids}}
local n = tonumber(ARGV[5])
local ids = argv_ids(6, n, 2)
local states = chunked_get('HMGET', K_STATE, ids)
local moved, ready, sset, stale = {}, {}, {}, {}
for r = 1, n do
  local id = ids[r]
  if applies(states[r], ARGV[5 + 2 * r], id) then
    local a, _, g = parse_state(states[r])
    moved[#moved + 1] = id
    ready[#ready + 1] = NOW_S
    ready[#ready + 1] = id
    sset[#sset + 1] = id
    sset[#sset + 1] = waiting(math.max(a - 1, 0), g)
  else
    stale[#stale + 1] = id
  end
end
if #moved > 0 then
  unlease(moved, K_READY, ready, sset)
  redis.call('HINCRBY', K_STATS, 'released', #moved)
  redis.call('PUBLISH', K_WAKE, '1')
end
return { #moved, stale }
