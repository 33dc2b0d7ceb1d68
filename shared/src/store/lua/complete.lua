-- complete.lua: finish leased jobs that WeChat answered (errcode 0): events, result rows, batch
-- counters, and the job is removed. Fenced: a job whose current fencing token differs is stale
-- and nothing is written for it.
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] when the accepted appids of shares are first checked for confirmation (ms); 0: they
--         are not scheduled here (no schedule entries below; a watcher's stream intake reads
--         their share.accepted events back)
-- ARGV[6] number of groups (consecutive jobs of one batch, kind and shape; <= 500 jobs in
--         all), per group: batch id, kind, A accepted appids per job, R rejected appids per job,
--         number of jobs J, then per job: id, fence, A x event JSON (share.accepted;
--         share.unshared for an unshare), R x share.failed event JSON, R x dedupe member (the
--         rejected pairs, freed so a re-import retries them), and for a share (unless ARGV[5]
--         is 0) A x (confirmation schedule entry id, its details JSON): the accepted appids
--         enter the confirmation schedule here, in the step that accepts them (confirm_lib.lua)
--         kind: "a" a share, "x" an unshare, each job with A + R result rows in its batch's
--         rows block below; "A", "X" the same without rows (jobs enqueued before result rows)
--         (what a group header carries costs Redis once per group, not once per job)
-- then the rows, rendered by the worker: the number of blocks B, per block (one per batch):
--         batch id, K, K x ("env/appid", result row) (the jobs' rows in job order, accepted
--         ones first), the number of bitmap writes W, per write: state name, M, M BITFIELD
--         arguments (SET uN offset value: the rows' bits in that state's bitmap, runs of
--         consecutive row numbers set at once)
-- The blocks and bitmap writes are what the call writes when every job applies; when one does
-- not (stale or acked twice), the rows of the jobs that apply are written one by one instead,
-- each row's number read from the row itself.
-- returns: {applied, {stale job ids}, {batch ids completed by this call}}
-- Cost: O(log n) per job plus one XADD per event.
local due = ARGV[5]
local scheduling = due ~= '0'
local groups = tonumber(ARGV[6])
local SHARE = { a = true, A = true }
-- Pass 1: where each group and job starts, and the job ids (for one HMGET of their states).
local heads, pos, ids = {}, {}, {}
local n = 0
local i = 7
for g = 1, groups do
  heads[g] = i
  local acc = COUNT[ARGV[i + 2]] or tonumber(ARGV[i + 2])
  local rej = COUNT[ARGV[i + 3]] or tonumber(ARGV[i + 3])
  local nj = tonumber(ARGV[i + 4])
  local step = 2 + acc + 2 * rej
  if scheduling and SHARE[ARGV[i + 1]] then
    step = step + 2 * acc
  end
  i = i + 5
  for _ = 1, nj do
    n = n + 1
    pos[n] = i
    ids[n] = ARGV[i]
    i = i + step
  end
end
local rows_at = i
local states = chunked_get('HMGET', K_STATE, ids)
-- Pass 2: the jobs that apply write their events; their batch counters are summed per group.
local done, stale, free, applied = {}, {}, {}, {}
local sched, infos = {}, {}
local nd, nf, ns = 0, 0, 0
local r = 0
for g = 1, groups do
  local h = heads[g]
  local batch, code = ARGV[h], ARGV[h + 1]
  local acc = COUNT[ARGV[h + 2]] or tonumber(ARGV[h + 2])
  local rej = COUNT[ARGV[h + 3]] or tonumber(ARGV[h + 3])
  local nj = tonumber(ARGV[h + 4])
  local share = SHARE[code]
  local kind = share and 'share.accepted' or 'share.unshared'
  local jobs = 0
  for _ = 1, nj do
    r = r + 1
    local at = pos[r]
    local id = ids[r]
    if applies(states[r], ARGV[at + 1], id) then
      nd = nd + 1
      done[nd] = id
      applied[r] = true
      jobs = jobs + 1
      local e = at + 2
      for x = e, e + acc - 1 do
        xadd(kind, ARGV[x])
      end
      e = e + acc
      for x = e, e + rej - 1 do
        xadd('share.failed', ARGV[x])
      end
      for x = e + rej, e + 2 * rej - 1 do
        nf = nf + 1
        free[nf] = ARGV[x]
      end
      if share and scheduling then
        for x = e + 2 * rej, e + 2 * rej + 2 * acc - 1, 2 do
          sched[ns + 1] = due
          sched[ns + 2] = ARGV[x]
          infos[ns + 1] = ARGV[x]
          infos[ns + 2] = ARGV[x + 1]
          ns = ns + 2
        end
      end
    else
      stale[#stale + 1] = id
    end
  end
  if jobs > 0 then
    bump_batch(batch, jobs, jobs * acc, jobs * rej)
  end
end

-- The rows.
local blocks = tonumber(ARGV[rows_at])
i = rows_at + 1
if nd == n then
  -- Every job applies: each block as the worker wrote it.
  for _ = 1, blocks do
    local key = results_key(ARGV[i])
    local k = tonumber(ARGV[i + 1])
    i = i + 2
    for s = i, i + 2 * k - 1, 1000 do
      redis.call('HSET', key, unpack(ARGV, s, math.min(s + 999, i + 2 * k - 1)))
    end
    i = i + 2 * k
    local writes = tonumber(ARGV[i])
    i = i + 1
    for _ = 1, writes do
      local bits = key .. ':' .. ARGV[i]
      local m = tonumber(ARGV[i + 1])
      i = i + 2
      for s = i, i + m - 1, 1000 do
        redis.call('BITFIELD', bits, unpack(ARGV, s, math.min(s + 999, i + m - 1)))
      end
      i = i + m
    end
  end
else
  -- Only the rows of the jobs that apply, one by one. A block holds its batch's jobs' rows in
  -- job order.
  local block_at = {}
  for _ = 1, blocks do
    local k = tonumber(ARGV[i + 1])
    block_at[ARGV[i]] = i + 2
    i = i + 2 + 2 * k
    local writes = tonumber(ARGV[i])
    i = i + 1
    for _ = 1, writes do
      i = i + 2 + tonumber(ARGV[i + 1])
    end
  end
  r = 0
  for g = 1, groups do
    local h = heads[g]
    local batch, code = ARGV[h], ARGV[h + 1]
    local acc = COUNT[ARGV[h + 2]] or tonumber(ARGV[h + 2])
    local rej = COUNT[ARGV[h + 3]] or tonumber(ARGV[h + 3])
    for _ = 1, tonumber(ARGV[h + 4]) do
      r = r + 1
      if code == 'a' or code == 'x' then
        local b = block_at[batch]
        if applied[r] then
          for x = 0, acc + rej - 1 do
            local field, row = ARGV[b + 2 * x], ARGV[b + 2 * x + 1]
            local seq = string.match(row, '^%a|(%d+)|')
            put_row(batch, field, seq, 'p', x < acc and code or 'f', row)
          end
        end
        block_at[batch] = b + 2 * (acc + rej)
      end
    end
  end
end

if nd > 0 then
  chunked('HDEL', K_JOBS, done, 1)
  chunked('HDEL', K_STATE, done, 1)
  chunked('ZREM', K_RUNNING, done, 1)
  if nf > 0 then
    chunked('ZREM', K_DEDUPE, free, 1)
  end
  if ns > 0 then
    chunked('ZADD', K_CONFIRM, sched, 2)
    chunked('HSET', K_CONFIRM_INFO, infos, 2)
  end
  redis.call('HINCRBY', K_STATS, 'completed', nd)
  if scheduling then
    -- Jobs whose accepted appids were scheduled here: what `completed` counts beyond this
    -- came from workers that leave scheduling to the stream intake (confirm_follow.lua).
    redis.call('HINCRBY', K_STATS, 'completed_direct', nd)
  end
end
return { nd, stale, flush_batches() }
