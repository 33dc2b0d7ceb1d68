-- complete.lua: finish leased jobs that WeChat answered (errcode 0): events, batch counters, and
-- the job is removed. Fenced: a job whose current fencing token differs is stale and nothing is
-- written for it.
-- KEYS[1..15] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] number of jobs (<= 500), then per job:
--         id, fence, batch id, A accepted appids, R rejected appids,
--         A x share.accepted event JSON, R x share.failed event JSON,
--         R x "env/appid" (the rejected pairs, freed from dedupe so a re-import retries them)
--         (the event type follows from the position: no type argument per event)
-- returns: {applied, {stale job ids}, {batch ids completed by this call}}
-- Cost: O(log n) per job plus one XADD per event.
local n = tonumber(ARGV[5])
local pos, ids, accs, rejs = {}, {}, {}, {}
local i = 6
for r = 1, n do
  local acc, rej = count(ARGV[i + 3]), count(ARGV[i + 4])
  pos[r] = i
  ids[r] = ARGV[i]
  accs[r] = acc
  rejs[r] = rej
  i = i + 5 + acc + 2 * rej
end
local states = chunked_get('HMGET', K_STATE, ids)
local done, stale, free = {}, {}, {}
local nd, nf = 0, 0
for r = 1, n do
  local at = pos[r]
  local id = ids[r]
  if applies(states[r], ARGV[at + 1], id) then
    nd = nd + 1
    done[nd] = id
    local acc, rej = accs[r], rejs[r]
    local e = at + 5
    for x = e, e + acc - 1 do
      xadd('share.accepted', ARGV[x])
    end
    e = e + acc
    for x = e, e + rej - 1 do
      xadd('share.failed', ARGV[x])
      nf = nf + 1
      free[nf] = ARGV[x + rej]
    end
    bump_batch(ARGV[at + 2], 1, acc, rej)
  else
    stale[#stale + 1] = id
  end
end
if nd > 0 then
  chunked('HDEL', K_JOBS, done, 1)
  chunked('HDEL', K_STATE, done, 1)
  chunked('ZREM', K_RUNNING, done, 1)
  if nf > 0 then
    chunked('ZREM', K_DEDUPE, free, 1)
  end
  redis.call('HINCRBY', K_STATS, 'completed', nd)
end
return { nd, stale, flush_batches() }
