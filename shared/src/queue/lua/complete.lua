-- complete.lua: finish leased jobs that WeChat answered (errcode 0): events, batch counters, and
-- the job is removed. Fenced: a job whose current fencing token differs is stale and nothing is
-- written for it.
-- KEYS[1..15] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] number of jobs (<= 500), then per job:
--         id, fence, batch id, accepted appids, failed appids, number of events E,
--         E x (type, event JSON), number of dedupe pairs to free F, F x "env/appid"
-- returns: {applied, {stale job ids}, {batch ids completed by this call}}
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
local done, stale, free = {}, {}, {}
for r = 1, n do
  local at, ne, nf = recs[r][1], recs[r][2], recs[r][3]
  local id = ARGV[at]
  local _, fence = parse_state(states[r])
  if fence and fence == ARGV[at + 1] and not ended[id] then
    -- The job ends here, so a duplicate later in ARGV is stale.
    ended[id] = true
    done[#done + 1] = id
    for e = 0, ne - 1 do
      xadd(ARGV[at + 6 + 2 * e], ARGV[at + 7 + 2 * e])
    end
    local fat = at + 7 + 2 * ne
    for k = 0, nf - 1 do
      free[#free + 1] = ARGV[fat + k]
    end
    bump_batch(ARGV[at + 2], 1, tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]))
  else
    stale[#stale + 1] = id
  end
end
if #done > 0 then
  chunked('HDEL', K_JOBS, done, 1)
  chunked('HDEL', K_STATE, done, 1)
  chunked('ZREM', K_RUNNING, done, 1)
  if #free > 0 then
    chunked('ZREM', K_DEDUPE, free, 1)
  end
  redis.call('HINCRBY', K_STATS, 'completed', #done)
end
return { #done, stale, flush_batches() }
