-- complete.lua: finish leased jobs that WeChat answered (errcode 0): events, batch counters, and
-- the job is removed. Fenced: a job whose current fencing token differs is stale and nothing is
-- written for it.
-- KEYS[1..15] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] number of jobs (<= 500), then per job:
--         id, fence, batch id, A accepted appids, R rejected appids, kind ("a": a share, its
--         accepted appids get share.accepted; "x": an unshare, share.unshared), attempts,
--         A x (event JSON, row number, "env/appid", confirmation URL or ""),
--         R x (share.failed event JSON, row number, "env/appid", errcode or "", errmsg),
--         R x dedupe member (the rejected pairs, freed so a re-import retries them)
--         (the event type follows from the position and kind; a row number "" (a job
--         enqueued before result rows existed) writes no row)
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
  i = i + 7 + 4 * acc + 6 * rej
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
    local batch = ARGV[at + 2]
    local code = ARGV[at + 5]
    local kind = code == 'x' and 'share.unshared' or 'share.accepted'
    local attempts = ARGV[at + 6]
    local e = at + 7
    for _ = 1, acc do
      xadd(kind, ARGV[e])
      local seq = ARGV[e + 1]
      if seq ~= '' then
        put_row(batch, ARGV[e + 2], seq, 'p', code, row(code, seq, attempts, '', '', id,
          ARGV[e + 3], ''))
      end
      e = e + 4
    end
    for _ = 1, rej do
      xadd('share.failed', ARGV[e])
      local seq = ARGV[e + 1]
      if seq ~= '' then
        put_row(batch, ARGV[e + 2], seq, 'p', 'f', row('f', seq, attempts, ARGV[e + 3],
          'rejected', id, '', ARGV[e + 4]))
      end
      e = e + 5
    end
    for x = e, e + rej - 1 do
      nf = nf + 1
      free[nf] = ARGV[x]
    end
    bump_batch(batch, 1, acc, rej)
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
