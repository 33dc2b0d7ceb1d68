-- enqueue.lua: add a slice of new jobs, skipping (env, appid) pairs inside their dedupe window.
-- KEYS[1..17] the queue's keys, see lib.lua (jobs, ready, scheduled, dedupe, batches, stats, wake
--             are written)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] force: "1" ignores the dedupe window (the window is still refreshed)
-- ARGV[6] dedupe window (ms)
-- ARGV[7] trim: at most this many expired dedupe members are removed by this call
-- ARGV[8] number of groups
-- ARGV[9] receipt key (envshare:{q}:receipt:<slice id>, built by keys.rs): a slice sent again
--         after a lost reply (Redis restarted, connection cut) gets the first call's answer and
--         writes nothing, so a producer may retry a slice safely, even with force
-- ARGV[10] how long the batch's record and result rows are kept once it completes (ms)
-- ARGV[11] the W3C traceparent of the enqueuing span ("" = none): copied into every job's
--         payload as "tp", and its trace id kept in the batch's record ("trace") the first time,
--         for batch.completed
-- ARGV[12..] per group (consecutive jobs sharing batch, env, operation and run-at):
--         batch id, env, run_at_ms ("0" = now), operation ("s" share, "u" unshare), appids per
--         job A ("0": each job gives its own), number of jobs J, then per job: id, (its number
--         of appids, only when A is "0"), its appids without their "wx" (the 16 hex digits:
--         every appid is "wx" and 16 hex digits, and the script puts the "wx" back in the
--         concatenations it makes anyway)
--         (ids, envs, batch ids and appids are validated in Rust: no characters needing JSON
--         escapes, so the payload is built by concatenation instead of cjson)
-- Each created pair gets its row number (a seq record; its result row is written when it
-- leaves pending). A job's payload names the row number of its first appid ("row"; the others
-- follow in order) and the job's index in the batch ("ji": its place in the batch's jobs
-- string; job ids are 26-character ULIDs). An unshare job's payload has "op":"unshare" and its
-- dedupe members are "u:env/appid".
-- returns: {jobs created, appids enqueued, pairs skipped, {1-based indexes (over all jobs of
--          this call) of jobs not created because every pair was a duplicate}}
-- Cost: O(log n) per pair; the caller keeps a slice to a few hundred jobs.
local force = ARGV[5] == '1'
local window_end = int(NOW + tonumber(ARGV[6]))
local trim = tonumber(ARGV[7])
local groups = tonumber(ARGV[8])
local RECEIPT = ARGV[9]
local RESULTS_TTL = ARGV[10]
local TP = ARGV[11]

local done_before = redis.call('GET', RECEIPT)
if done_before then
  return cjson.decode(done_before)
end

-- Bounded trim of expired dedupe members: find the trim-th expired score and remove below it.
local nth = redis.call('ZRANGEBYSCORE', K_DEDUPE, '-inf', NOW_S, 'WITHSCORES', 'LIMIT', trim - 1, 1)
if #nth > 0 then
  redis.call('ZREMRANGEBYSCORE', K_DEDUPE, '-inf', '(' .. nth[2])
else
  redis.call('ZREMRANGEBYSCORE', K_DEDUPE, '-inf', NOW_S)
end

-- Pass 1: the dedupe member of every pair, in ARGV order.
local pairs_ = {}
local np = 0
local i = 12
for _ = 1, groups do
  local prefix = ARGV[i + 1] .. '/wx'
  if ARGV[i + 3] == 'u' then
    prefix = 'u:' .. prefix
  end
  local per = COUNT[ARGV[i + 4]] or tonumber(ARGV[i + 4])
  local nj = tonumber(ARGV[i + 5])
  i = i + 6
  for _ = 1, nj do
    local na, first = per, i + 1
    if per == 0 then
      na, first = COUNT[ARGV[i + 1]] or tonumber(ARGV[i + 1]), i + 2
    end
    for k = first, first + na - 1 do
      np = np + 1
      pairs_[np] = prefix .. ARGV[k]
    end
    i = first + na
  end
end

local scores = {}
if not force and np > 0 then
  scores = chunked_get('ZMSCORE', K_DEDUPE, pairs_)
end

-- Pass 2: create the jobs whose pairs are not all duplicates.
local seen = {}
local hset, ready, sched, dd, not_created = {}, {}, {}, {}, {}
local nh, nr, ns, nd = 0, 0, 0, 0
local created, kept_total, skipped = 0, 0, 0
local batch_jobs, batch_appids, batch_list = {}, {}, {}
local p, j = 0, 0
-- Result rows: the next row number per batch, the env indexes, and per batch the seq records
-- of this call (contiguous from its first row number).
local next_row, env_index, seq_recs, seq_first = {}, {}, {}, {}
local next_job, job_recs, job_first = {}, {}, {}
local row_digits, job_digits = digits(), digits()
-- The job index in a seq record, 4 bytes big-endian: the first three change once per 256 jobs.
local jb_hi_n, jb_hi = -1, ''
local function env_idx(batch, env)
  local k = batch .. '/' .. env
  local idx = env_index[k]
  if not idx then
    local ekey = results_key(batch) .. ':envs'
    idx = tonumber(redis.call('HGET', ekey, 'e:' .. env))
    if not idx then
      idx = redis.call('HINCRBY', ekey, 'n', 1) - 1
      redis.call('HSET', ekey, 'e:' .. env, idx, 'i:' .. idx, env)
    end
    idx = string.char(math.floor(idx / 256) % 256, idx % 256)
    env_index[k] = idx
  end
  return idx
end
i = 12
for _ = 1, groups do
  local batch, env, run_at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local unshare = ARGV[i + 3] == 'u'
  local per = COUNT[ARGV[i + 4]] or tonumber(ARGV[i + 4])
  local nj = tonumber(ARGV[i + 5])
  i = i + 6
  if not next_row[batch] then
    local h = redis.call('HMGET', batch_key(batch), 'appids', 'jobs')
    -- The row hash, pinned a hash table before its first row (pin_state in lib.lua says why):
    -- a batch's rows are written into a listpack otherwise, each scanning the rows before it,
    -- up to hash-max-listpack-entries (512) of them.
    redis.call('HSETNX', results_key(batch), PIN, PIN_VALUE)
    next_row[batch] = tonumber(h[1] or 0) or 0
    seq_first[batch] = next_row[batch]
    seq_recs[batch] = {}
    next_job[batch] = tonumber(h[2] or 0) or 0
    job_first[batch] = next_job[batch]
    job_recs[batch] = {}
  end
  local jrecs, jfirst, sfirst = job_recs[batch], job_first[batch], seq_first[batch]
  local recs = seq_recs[batch]
  local eidx = env_idx(batch, env)
  -- The payload is head .. appids .. mid .. row .. tail; head, mid and tail are the same for
  -- the whole group.
  local head = '{"env":"' .. env .. '","appids":["wx'
  if unshare then
    head = '{"op":"unshare","env":"' .. env .. '","appids":["wx'
  end
  local mid = '"],"batch":"' .. batch .. '","gen":0,"row":'
  local tail = ',"created_at":' .. NOW_S .. '}'
  if TP ~= '' then
    tail = ',"created_at":' .. NOW_S .. ',"tp":"' .. TP .. '"}'
  end
  local zset, score = ready, NOW_S
  if run_at > NOW then
    zset, score = sched, int(run_at)
  end
  local g_jobs, g_appids = 0, 0
  -- The batch's next row number and job index, kept in locals through the group.
  local row_n, job_n = next_row[batch], next_job[batch]
  for _ = 1, nj do
    j = j + 1
    local id, na, first_arg = ARGV[i], per, i + 1
    if per == 0 then
      na, first_arg = COUNT[ARGV[i + 1]] or tonumber(ARGV[i + 1]), i + 2
    end
    local kept, nk = nil, 0
    local single
    for k = first_arg, first_arg + na - 1 do
      p = p + 1
      local pair = pairs_[p]
      local s = scores[p]
      if seen[pair] or (s and tonumber(s) > NOW) then
        skipped = skipped + 1
      else
        seen[pair] = true
        nk = nk + 1
        -- Most jobs keep one appid or all of them: no table for the one-appid case.
        if nk == 1 then
          single = ARGV[k]
        else
          if nk == 2 then
            kept = { single }
          end
          kept[nk] = ARGV[k]
        end
        dd[nd + 1] = window_end
        dd[nd + 2] = pair
        nd = nd + 2
      end
    end
    i = first_arg + na
    if nk == 0 then
      not_created[#not_created + 1] = j
    else
      g_jobs = g_jobs + 1
      g_appids = g_appids + nk
      local first = row_n
      row_n = first + nk
      local jn = job_n
      job_n = jn + 1
      jrecs[jn - jfirst + 1] = id
      -- Each seq record goes into recs as its parts (env index, appid digits, job index), which
      -- one table.concat joins: no string is built per record.
      local lo = jn % 256
      local hi = (jn - lo) / 256
      if hi ~= jb_hi_n then
        jb_hi_n = hi
        jb_hi = string.char(math.floor(hi / 65536) % 256, math.floor(hi / 256) % 256, hi % 256)
      end
      local jb_lo = string.char(lo)
      local nrec = (first - sfirst) * 4
      if nk == 1 then
        recs[nrec + 1] = eidx
        recs[nrec + 2] = single
        recs[nrec + 3] = jb_hi
        recs[nrec + 4] = jb_lo
      else
        for x = 1, nk do
          recs[nrec + 1] = eidx
          recs[nrec + 2] = kept[x]
          recs[nrec + 3] = jb_hi
          recs[nrec + 4] = jb_lo
          nrec = nrec + 4
        end
      end
      hset[nh + 1] = id
      local rh, rl = row_digits(first)
      local jh, jl = job_digits(jn)
      if nk == 1 then
        hset[nh + 2] = head .. single .. mid .. rh .. rl .. ',"ji":' .. jh .. jl .. tail
      else
        hset[nh + 2] = head .. table.concat(kept, '","wx') .. mid .. rh .. rl .. ',"ji":' .. jh
          .. jl .. tail
      end
      nh = nh + 2
      if zset == ready then
        ready[nr + 1] = score
        ready[nr + 2] = id
        nr = nr + 2
      else
        sched[ns + 1] = score
        sched[ns + 2] = id
        ns = ns + 2
      end
    end
  end
  next_row[batch], next_job[batch] = row_n, job_n
  if g_jobs > 0 then
    created = created + g_jobs
    kept_total = kept_total + g_appids
    if not batch_jobs[batch] then
      batch_jobs[batch] = 0
      batch_appids[batch] = 0
      batch_list[#batch_list + 1] = batch
    end
    batch_jobs[batch] = batch_jobs[batch] + g_jobs
    batch_appids[batch] = batch_appids[batch] + g_appids
  end
end

if created > 0 then
  chunked('HSET', K_JOBS, hset, 2)
  if nr > 0 then
    zadd(K_READY, ready)
  end
  if ns > 0 then
    zadd(K_SCHED, sched)
  end
  zadd(K_DEDUPE, dd)
  for _, b in ipairs(batch_list) do
    local key = batch_key(b)
    redis.call('HINCRBY', key, 'jobs', batch_jobs[b])
    redis.call('HINCRBY', key, 'appids', batch_appids[b])
    redis.call('HSETNX', key, 'created_at', NOW_S)
    redis.call('HSET', key, 'ttl', RESULTS_TTL)
    if TP ~= '' then
      redis.call('HSETNX', key, 'trace', string.sub(TP, 4, 35))
    end
    redis.call('ZADD', K_BATCHES, 'NX', NOW_S, b)
    redis.call('SETRANGE', results_key(b) .. ':seq', seq_first[b] * SEQ_WIDTH,
      table.concat(seq_recs[b]))
    redis.call('SETRANGE', results_key(b) .. ':jobs', job_first[b] * JOB_WIDTH,
      table.concat(job_recs[b]))
  end
  redis.call('HINCRBY', K_STATS, 'enqueued', created)
  if nr > 0 then
    redis.call('PUBLISH', K_WAKE, '1')
  end
end
local result = { created, kept_total, skipped, not_created }
-- Kept well past any producer's retry deadline.
redis.call('SET', RECEIPT, cjson.encode(result), 'PX', 3600000)
return result
