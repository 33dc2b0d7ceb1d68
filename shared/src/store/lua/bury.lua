-- bury.lua: move leased jobs to dead (permanent error or retries exhausted) with their
-- share.failed events, batch counters, and their dedupe pairs freed so a re-import retries them.
-- Fenced: a job whose current fencing token differs is stale and nothing is written for it.
-- KEYS[1..15] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] number of jobs (<= 500), then per job:
--         id, fence, batch id, failed appids, dead info JSON, number of events E,
--         E x (type, event JSON), number of dedupe pairs to free F, F x "env/appid"
-- returns: {applied, {stale job ids}, {batch ids completed by this call}}
-- The payload stays in jobs so the dead job can be retried.
local n = tonumber(ARGV[5])
local recs, ids = {}, {}
local i = 6
for r = 1, n do
  local ne = tonumber(ARGV[i + 5])
  local nf = tonumber(ARGV[i + 6 + 2 * ne])
  recs[r] = { i, ne, nf }
  ids[r] = ARGV[i]
  i = i + 7 + 2 * ne + nf
end
local states = chunked_get('HMGET', K_STATE, ids)
local ended = {}
local gone, dead, info, stale, free = {}, {}, {}, {}, {}
for r = 1, n do
  local at, ne, nf = recs[r][1], recs[r][2], recs[r][3]
  local id = ARGV[at]
  local _, fence = parse_state(states[r])
  if fence and fence == ARGV[at + 1] and not ended[id] then
    -- The job ends here, so a duplicate later in ARGV is stale.
    ended[id] = true
    gone[#gone + 1] = id
    dead[#dead + 1] = NOW_S
    dead[#dead + 1] = id
    info[#info + 1] = id
    info[#info + 1] = ARGV[at + 4]
    for e = 0, ne - 1 do
      xadd(ARGV[at + 6 + 2 * e], ARGV[at + 7 + 2 * e])
    end
    local fat = at + 7 + 2 * ne
    for k = 0, nf - 1 do
      free[#free + 1] = ARGV[fat + k]
    end
    bump_batch(ARGV[at + 2], 1, 0, tonumber(ARGV[at + 3]))
  else
    stale[#stale + 1] = id
  end
end
if #gone > 0 then
  chunked('ZREM', K_RUNNING, gone, 1)
  write_dead(gone, dead, info, free)
end
return { #gone, stale, flush_batches() }
