-- bury.lua: move leased jobs to dead (permanent error or retries exhausted) with their
-- share.failed events, batch counters, and their dedupe pairs freed so a re-import retries them.
-- Fenced: a job whose current fencing token differs is stale and nothing is written for it.
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] number of jobs (<= 500), then per job:
--         id, fence, batch id, failed appids, dead info JSON, number of events E,
--         E x (type, event JSON), number of dedupe members to free F, F x member,
--         number of result rows M, M x (row number, "env/appid", result row) (the rows
--         become failed; rendered by the worker)
-- returns: {applied, {stale job ids}, {batch ids completed by this call}}
-- The payload stays in jobs so the dead job can be retried.
local n = tonumber(ARGV[5])
local recs, ids = {}, {}
local i = 6
for r = 1, n do
  local ne = tonumber(ARGV[i + 5])
  local nf = tonumber(ARGV[i + 6 + 2 * ne])
  local nr = tonumber(ARGV[i + 7 + 2 * ne + nf])
  recs[r] = { i, ne, nf, nr }
  ids[r] = ARGV[i]
  i = i + 8 + 2 * ne + nf + 3 * nr
end
local states = chunked_get('HMGET', K_STATE, ids)
local gr, stale = graves(), {}
for r = 1, n do
  local at, ne, nf, nr = recs[r][1], recs[r][2], recs[r][3], recs[r][4]
  local id = ARGV[at]
  if applies(states[r], ARGV[at + 1], id) then
    local a, _, g = parse_state(states[r])
    dig(gr, id, a, g, ARGV[at + 4])
    for e = 0, ne - 1 do
      xadd(ARGV[at + 6 + 2 * e], ARGV[at + 7 + 2 * e])
    end
    local fat = at + 7 + 2 * ne
    for k = 0, nf - 1 do
      gr.free[#gr.free + 1] = ARGV[fat + k]
    end
    for k = fat + nf + 1, fat + nf + 3 * nr, 3 do
      put_row(ARGV[at + 2], ARGV[k + 1], ARGV[k], 'p', 'f', ARGV[k + 2])
    end
    bump_batch(ARGV[at + 2], 1, 0, tonumber(ARGV[at + 3]))
  else
    stale[#stale + 1] = id
  end
end
chunked('ZREM', K_RUNNING, gr.ids, 1)
local applied = write_dead(gr)
return { applied, stale, flush_batches() }
