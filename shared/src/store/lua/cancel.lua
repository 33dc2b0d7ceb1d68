-- cancel.lua: cancel a batch, a slice of its rows at a time: every job of the batch still
-- waiting (ready or scheduled) leaves the queue, its appids get share.failed with reason
-- cancelled and their result rows become cancelled, and the batch counts the job as ended (so
-- it completes once the rest has ended). Leased jobs are left to finish; their outcome is
-- recorded as usual. The batch is marked cancelled (field `cancelled`, the time in ms).
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] batch id   ARGV[6] first row number to look at   ARGV[7] pending rows to look at
--         at most (<= 1000)
-- returns: {"unknown"} when no such batch, {"completed"} when it had completed already
--          (nothing changes), else {"ok", next row number (-1: no pending row left),
--          jobs cancelled, appids cancelled, leased jobs left running, {completed batch ids}}
-- Cost: O(1) per row looked at plus O(log n) per job cancelled.
local batch = ARGV[5]
local key = batch_key(batch)
local h = redis.call('HMGET', key, 'completed', 'appids')
if not h[2] then
  return { 'unknown' }
end
if h[1] == '1' then
  return { 'completed' }
end
redis.call('HSETNX', key, 'cancelled', NOW_S)
local rkey = results_key(batch)
local seqkey = rkey .. ':seq'
local rows = redis.call('STRLEN', seqkey) / SEQ_WIDTH
local pending = pending_bits(batch, rows)
local cursor, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local handled = {}
local jobs, appids, running = 0, 0, 0
local removed, free = {}, {}
while budget > 0 do
  local seq = redis.call('BITPOS', pending, 1, cursor, -1, 'BIT')
  if seq < 0 or seq >= rows then
    cursor = -1
    break
  end
  cursor = seq + 1
  budget = budget - 1
  local rec = redis.call('GETRANGE', seqkey, seq * SEQ_WIDTH, seq * SEQ_WIDTH + SEQ_WIDTH - 1)
  local job = job_id_at(batch, rec_job(rec))
  if job ~= '' and not handled[job] then
    handled[job] = true
    if redis.call('ZSCORE', K_READY, job) or redis.call('ZSCORE', K_SCHED, job) then
      local raw = redis.call('HGET', K_JOBS, job)
      if raw then
        local p = cjson.decode(raw)
        local a, _, g = parse_state(redis.call('HGET', K_STATE, job))
        g = g or tonumber(p.gen) or 0
        for _, appid in ipairs(p.appids) do
          xadd('share.failed', share_failed(p, job, g, appid, a, 'cancelled by an operator',
            'cancelled'))
          free[#free + 1] = dedupe_member(p, appid)
        end
        end_rows(p, 'c', a, 'cancelled by an operator', 'cancelled')
        bump_batch(batch, 1, 0, #p.appids)
        removed[#removed + 1] = job
        jobs = jobs + 1
        appids = appids + #p.appids
      end
    elseif redis.call('ZSCORE', K_RUNNING, job) then
      running = running + 1
    end
  end
end
if #removed > 0 then
  chunked('ZREM', K_READY, removed, 1)
  chunked('ZREM', K_SCHED, removed, 1)
  chunked('HDEL', K_JOBS, removed, 1)
  chunked('HDEL', K_STATE, removed, 1)
  chunked('ZREM', K_DEDUPE, free, 1)
  redis.call('HINCRBY', K_STATS, 'cancelled', #removed)
end
redis.call('DEL', pending)
return { 'ok', cursor, jobs, appids, running, flush_batches() }
