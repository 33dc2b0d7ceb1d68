-- lib.lua: the queue's lib, after prelude.lua at the start of every queue script (not a script
-- of its own).
--
-- Every queue script receives the same KEYS (built by keys.rs, in this order) and the common
-- ARGV of prelude.lua; script-specific ARGV start at ARGV[5].
-- KEYS[1]  envshare:{q}:jobs       (hash)   job id -> payload JSON
-- KEYS[2]  envshare:{q}:ready      (zset)   job id -> ms it became ready
-- KEYS[3]  envshare:{q}:scheduled  (zset)   job id -> run-at ms
-- KEYS[4]  envshare:{q}:running    (zset)   job id -> lease deadline ms; plus one member
--                                           scored +inf (see pin_state below)
-- KEYS[5]  envshare:{q}:state      (hash)   job id -> state record (see parse_state below);
--                                           plus the field ":encoding" (see pin_state below)
-- KEYS[6]  envshare:{q}:fence      (string) last fencing token
-- KEYS[7]  envshare:{q}:dead       (zset)   job id -> ms it died
-- KEYS[8]  envshare:{q}:dead:info  (hash)   job id -> JSON {reason, errcode, errmsg, attempts, at}
-- KEYS[9]  envshare:{q}:events     (stream) fields type, event
-- KEYS[10] envshare:{q}:dedupe     (zset)   "env/appid" -> end of dedupe window ms
-- KEYS[11] envshare:{q}:pause      (hash)   until, reason
-- KEYS[12] envshare:{q}:workers    (zset)   worker id -> last seen ms
-- KEYS[13] envshare:{q}:stats      (hash)   counters
-- KEYS[14] envshare:{q}:batches    (zset)   batch id -> created ms
-- KEYS[15] envshare:{q}:wake       (pub/sub channel) published when jobs become ready
-- KEYS[16] envshare:{q}:confirm    (zset)   confirmation schedule (see confirm_lib.lua)
-- KEYS[17] envshare:{q}:confirm:info (hash) its entries' details (see confirm_lib.lua)

local K_JOBS, K_READY, K_SCHED, K_RUNNING, K_STATE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_FENCE, K_DEAD, K_DEAD_INFO, K_EVENTS, K_DEDUPE = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local K_PAUSE, K_WORKERS, K_STATS, K_BATCHES, K_WAKE = KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local K_CONFIRM, K_CONFIRM_INFO = KEYS[16], KEYS[17]
local xadd, trim_events = event_stream(K_EVENTS)
local maybe_confirm = batch_confirmer(xadd)

-- Lua's unpack() fails past a few thousand values, so variadic commands take bounded slices.
local CHUNK = 1000

-- Calls `cmd key v1 v2 ...` over `items` in slices of at most CHUNK values; `width` is the
-- number of values per record (2 for ZADD score/member, HSET field/value), so no record is split.
local function chunked(cmd, key, items, width)
  local n = #items
  local step = CHUNK - (CHUNK % width)
  for i = 1, n, step do
    redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, n)))
  end
end

-- A sorted set of fewer than zset-max-listpack-entries (128) members is a listpack, where each
-- ZADD scans the entries and parses every score: adding hundreds of members to one (a new or
-- drained queue, a first import) cost ~20k instructions per member, O(n^2) per call. A member
-- longer than zset-max-listpack-value (64) turns the set into a skip list first, and it stays
-- one when that member is removed again in the same call (Redis never converts a sorted set
-- back), so no reader ever sees the member. zadd(key, items) adds items (score, member, ...)
-- that way when they are 32 members or more. Only for ready, scheduled and dedupe: should a
-- later write of the same call fail (memory), the member left behind scores -inf, so the next
-- claim leases it first and the worker, finding no payload, drops it (drop.lua); the dedupe
-- trim removes it.
local WIDE = ':encoding: a member longer than zset-max-listpack-value turns the set into a skip list'
local WIDE_FROM = 32
local function zadd(key, items)
  local wide = #items >= 2 * WIDE_FROM
  if wide then
    redis.call('ZADD', key, '-inf', WIDE)
  end
  chunked('ZADD', key, items, 2)
  if wide then
    redis.call('ZREM', key, WIDE)
  end
end

-- The `n` ARGV values at first, first + stride, first + 2 * stride, ... (the job ids of a
-- script whose per-job records are `stride` values long).
local function argv_ids(first, n, stride)
  local ids = {}
  for r = 1, n do
    ids[r] = ARGV[first + (r - 1) * stride]
  end
  return ids
end

-- Calls `cmd key ids...` in slices and returns the concatenated replies (HMGET, ZMSCORE).
local function chunked_get(cmd, key, ids)
  local n = #ids
  if n == 0 then
    return {}
  elseif n <= CHUNK then
    return redis.call(cmd, key, unpack(ids))
  end
  local out = {}
  for i = 1, n, CHUNK do
    local part = redis.call(cmd, key, unpack(ids, i, math.min(i + CHUNK - 1, n)))
    for j = 1, #part do
      out[#out + 1] = part[j]
    end
  end
  return out
end

-- A job's state record (a field of K_STATE):
--   "attempts"                 waiting (ready or scheduled) after at least one claim
--   "fence:attempts:worker"    leased (running)
-- When the job's generation is above 0 (an operator retried it from dead), "/gen" follows the
-- attempts: "attempts/gen", "fence:attempts/gen:worker", and a dead job keeps "attempts/gen".
-- No record: attempts 0 and generation 0. A record without "/gen" leaves the generation to the
-- payload's "gen" field, which records written by older versions carry.
-- parse_state returns attempts (number), fence (string or nil), generation (number or nil).
local function parse_state(s)
  if not s then
    return 0, nil, nil
  end
  local f, a, g = string.match(s, '^(%d+):(%d+)/?(%d*)')
  if f then
    return tonumber(a), f, tonumber(g)
  end
  a, g = string.match(s, '^(%d*)/?(%d*)')
  return tonumber(a) or 0, nil, tonumber(g)
end

-- The waiting record of a job with `a` attempts and generation `g` (a number or nil).
local function waiting(a, g)
  if g and g > 0 then
    return int(a) .. '/' .. int(g)
  end
  return int(a)
end

-- The jobs this call has ended, so a job acked twice in one call is applied once.
local ended = {}

-- The ack gate of complete, retry, bury and release: whether the ack of job `id` with token
-- `fence` applies. It does when the job's state record holds that lease and no earlier ack of
-- this call ended the job; the job ends here, so a duplicate later in ARGV is stale.
local function applies(record, fence, id)
  if holds(record, fence) and not ended[id] then
    ended[id] = true
    return true
  end
  return false
end

-- Strings of small counts, so the hot paths skip a sprintf for them.
local SMALL = { '1', '2', '3', '4', '5', '6', '7', '8', '9', '10' }
SMALL[0] = '0'
local function small(n)
  return SMALL[n] or int(n)
end
-- "00" to "99" back to back: a substring of it is a number's last two digits.
local TWO = '0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849'
  .. '5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899'
-- Decimal digits without a sprintf per number (one costs ~0.7 µs in Redis's Lua, as much as the
-- rest of a job's claim) for whole numbers >= 0 that mostly rise one by one (fences, row
-- numbers, job indexes). digits() makes a formatter; formatter(n) returns n's digits as two
-- strings to put side by side in a concatenation: the digits above the last two (formatted once
-- per hundred) and the last two ("" and n itself below 100). No string is built for n, so a
-- concatenation that takes both parts builds only its own result.
local function digits()
  local hi_n, hi_s = 0, ''
  return function(n)
    local lo = n % 100
    local hi = (n - lo) / 100
    if hi == 0 then
      return '', SMALL[lo] or string.sub(TWO, 2 * lo + 1, 2 * lo + 2)
    end
    if hi ~= hi_n then
      hi_n, hi_s = hi, int(hi)
    end
    return hi_s, string.sub(TWO, 2 * lo + 1, 2 * lo + 2)
  end
end
-- The reverse: ARGV counts (mostly 0 or 1) without strtod, as `COUNT[s] or tonumber(s)`
-- written out in the loops that read them (a function call per count costs more than the
-- lookup).
local COUNT = { ['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5, ['6'] = 6,
  ['7'] = 7, ['8'] = 8, ['9'] = 9, ['10'] = 10 }

-- A hash of at most hash-max-listpack-entries (128..512) small fields is stored as a listpack,
-- where HGET/HSET/HDEL scan every field: with a few hundred jobs in flight that linear scan
-- was a fifth of Redis's CPU. One value longer than hash-max-listpack-value (64) keeps the state
-- hash a real hash table for good, so every per-job access is O(1). The field name cannot be a
-- job id (ids have no ':'); HLEN of this hash is not used anywhere.
-- The same holds for the running set: below zset-max-listpack-entries (128) leases it is a
-- listpack, where each ZADD walks the entries parsing every score (a claim of 29 leases into
-- 40 cost 110 µs, into a skip list 20 µs) and each ZREM scans them. That is exactly the
-- regime of jobs that wait on the API: few leases held. A member longer than
-- zset-max-listpack-value (64) keeps it a skip list for good; its score +inf keeps it out of
-- every reap (ZRANGEBYSCORE up to now), and readers count leases with ZCOUNT below +inf.
local PIN = ':encoding'
local PIN_VALUE = 'this value is longer than hash-max-listpack-value so the hash stays a hash table'
local RUNNING_PIN = ':encoding: this member is longer than zset-max-listpack-value so the set stays a skip list'
local function pin_state()
  redis.call('HSETNX', K_STATE, PIN, PIN_VALUE)
  redis.call('ZADD', K_RUNNING, 'inf', RUNNING_PIN)
end

-- Batch counter deltas of this call, flushed once per batch at the end.
local batch_delta = {}
local batch_order = {}
local function bump_batch(id, done, accepted, failed)
  local d = batch_delta[id]
  if not d then
    d = { 0, 0, 0 }
    batch_delta[id] = d
    batch_order[#batch_order + 1] = id
  end
  d[1] = d[1] + done
  d[2] = d[2] + accepted
  d[3] = d[3] + failed
end

-- Emits batch.completed if the batch is sealed, every job has ended and it was never emitted
-- (then batch.confirmed too, if nothing is left to confirm), and from then on lets the batch's
-- record and result rows expire after its `ttl` (ms).
-- `h` is HMGET jobs done_jobs sealed completed appids accepted failed ttl trace (after this
-- call's deltas; trace: the trace id of the import that created the batch, if it was traced).
local function maybe_complete(id, key, h)
  local jobs, done = tonumber(h[1] or 0) or 0, tonumber(h[2] or 0) or 0
  if h[3] == '1' and h[4] ~= '1' and done >= jobs then
    redis.call('HSET', key, 'completed', '1', 'completed_at', NOW_S)
    local ttl = tonumber(h[8] or 0) or 0
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
      for _, k in ipairs(results_keys(id)) do
        redis.call('PEXPIRE', k, ttl)
      end
    end
    local e = {
      'v', 1, 'id', 'batch.' .. id .. '.completed', 'at', AT, 'type', 'batch.completed',
      'batch_id', id, 'total', tonumber(h[5] or 0) or 0, 'accepted', tonumber(h[6] or 0) or 0,
      'failed', tonumber(h[7] or 0) or 0,
    }
    if h[9] then
      e[#e + 1] = 'trace_id'
      e[#e + 1] = h[9]
    end
    xadd('batch.completed', json_object(e))
    -- Every accepted appid may be settled already (or none was accepted).
    maybe_confirm(id)
    return true
  end
  return false
end

-- Writes this call's result rows and batch deltas (one HMGET + one HSET per batch), trims the
-- events stream if this call added events, and returns the ids of the batches that completed
-- now. Every script that may add events or rows calls it last (seal.lua calls trim_events
-- itself).
local function flush_batches()
  results_flush()
  local completed = {}
  for _, id in ipairs(batch_order) do
    local d = batch_delta[id]
    local key = batch_key(id)
    local h = redis.call('HMGET', key, 'jobs', 'done_jobs', 'sealed', 'completed', 'appids',
      'accepted', 'failed', 'ttl', 'trace')
    h[2] = (tonumber(h[2] or 0) or 0) + d[1]
    h[6] = (tonumber(h[6] or 0) or 0) + d[2]
    h[7] = (tonumber(h[7] or 0) or 0) + d[3]
    redis.call('HSET', key, 'done_jobs', int(h[2]), 'accepted', int(h[6]), 'failed', int(h[7]))
    if maybe_complete(id, key, h) then
      completed[#completed + 1] = id
    end
  end
  trim_events()
  return completed
end

-- The share.failed event of `appid` of job `job_id` (payload `p`, generation `gen`).
-- A payload with a traceparent ("tp") gives the event its trace id.
local function share_failed(p, job_id, gen, appid, attempts, errmsg, reason)
  local e = {
    'v', 1, 'id', job_id .. '.' .. int(gen) .. '.' .. appid, 'at', AT, 'type', 'share.failed',
    'job_id', job_id, 'batch_id', p.batch, 'env', p.env, 'appid', appid,
    'confirm_url', cjson.null, 'attempts', attempts, 'errcode', cjson.null, 'errmsg', errmsg,
    'reason', reason,
  }
  if type(p.tp) == 'string' then
    e[#e + 1] = 'trace_id'
    e[#e + 1] = string.sub(p.tp, 4, 35)
  end
  return json_object(e)
end

-- Marks the pending rows of the appids of a job (payload `p`, rows from p.row) failed
-- with `attempts`, `errmsg` and `reason`, or state `code` with that reason (cancelled).
local function end_rows(p, code, attempts, errmsg, reason)
  if not p.row then
    return
  end
  local first = tonumber(p.row)
  for x, appid in ipairs(p.appids) do
    local seq = int(first + x - 1)
    put_row(p.batch, p.env .. '/' .. appid, seq, 'p', code,
      row(code, seq, int(attempts), '', reason, int(p.ji or 0), '', errmsg))
  end
end

-- The dedupe member of `appid` in payload `p`: "env/appid" for a share, "u:env/appid" for an
-- unshare.
local function dedupe_member(p, appid)
  if p.op == 'unshare' then
    return 'u:' .. p.env .. '/' .. appid
  end
  return p.env .. '/' .. appid
end

-- Jobs moving to dead in one call: `ids`; the state records to delete (`drop`, ids: generation
-- 0) and to keep as "attempts/gen" (`keep`, HSET pairs: a later generation, which dead_retry
-- counts on from); `dead` ZADD pairs (died ms, id); `info` HSET pairs (id, dead info JSON);
-- `free` the dedupe members to release (a re-import retries them).
local function graves()
  return { ids = {}, drop = {}, keep = {}, dead = {}, info = {}, free = {} }
end

-- Adds job `id` (`a` attempts, generation `g`: a number or nil) with its dead info JSON to `gr`.
local function dig(gr, id, a, g, info)
  gr.ids[#gr.ids + 1] = id
  if g and g > 0 then
    gr.keep[#gr.keep + 1] = id
    gr.keep[#gr.keep + 1] = waiting(a, g)
  else
    gr.drop[#gr.drop + 1] = id
  end
  gr.dead[#gr.dead + 1] = NOW_S
  gr.dead[#gr.dead + 1] = id
  gr.info[#gr.info + 1] = id
  gr.info[#gr.info + 1] = info
end

-- Moves the jobs of `gr` to dead. Returns how many.
local function write_dead(gr)
  local n = #gr.ids
  if n == 0 then
    return 0
  end
  chunked('HDEL', K_STATE, gr.drop, 1)
  chunked('HSET', K_STATE, gr.keep, 2)
  chunked('ZADD', K_DEAD, gr.dead, 2)
  chunked('HSET', K_DEAD_INFO, gr.info, 2)
  chunked('ZREM', K_DEDUPE, gr.free, 1)
  redis.call('HINCRBY', K_STATS, 'dead', n)
  return n
end

-- Ends the leases of `moved` (job ids): out of running, into the sorted set `zset` with the
-- ZADD pairs `z`, their state records set from the HSET pairs `sset`.
local function unlease(moved, zset, z, sset)
  chunked('ZREM', K_RUNNING, moved, 1)
  zadd(zset, z)
  chunked('HSET', K_STATE, sset, 2)
end

-- Moves up to `limit` leases past their deadline back to ready (the attempt stays counted), or
-- to dead with reason lease_expired when attempts >= max_attempts (share.failed per appid,
-- batch counters, dedupe pairs freed). Returns requeued, buried.
local function reap(limit, max_attempts)
  local ids = redis.call('ZRANGEBYSCORE', K_RUNNING, '-inf', NOW_S, 'LIMIT', 0, limit)
  if #ids == 0 then
    return 0, 0
  end
  local states = chunked_get('HMGET', K_STATE, ids)
  local ready, sset, gr = {}, {}, graves()
  -- A requeued orphan goes to the FRONT of ready (just ahead of the oldest ready job): it has
  -- waited its turn once already, and a crash must not send it behind the whole backlog.
  local head = redis.call('ZRANGE', K_READY, 0, 0, 'WITHSCORES')
  local requeue_at = NOW_S
  if head[2] and tonumber(head[2]) <= NOW then
    requeue_at = int(tonumber(head[2]) - 1)
  end
  for i, id in ipairs(ids) do
    local a, _, g = parse_state(states[i])
    if a >= max_attempts then
      -- Rare path: only a job dying here needs its payload, for its events.
      local raw = redis.call('HGET', K_JOBS, id)
      if raw then
        local p = cjson.decode(raw)
        g = g or tonumber(p.gen) or 0
        for _, appid in ipairs(p.appids) do
          xadd('share.failed', share_failed(p, id, g, appid, a, 'lease expired', 'lease_expired'))
          gr.free[#gr.free + 1] = dedupe_member(p, appid)
        end
        end_rows(p, 'f', a, 'lease expired', 'lease_expired')
        bump_batch(p.batch, 1, 0, #p.appids)
      end
      dig(gr, id, a, g, cjson.encode({ reason = 'lease_expired', errcode = cjson.null,
        errmsg = 'lease expired', attempts = a, at = NOW }))
    else
      ready[#ready + 1] = requeue_at
      ready[#ready + 1] = id
      sset[#sset + 1] = id
      sset[#sset + 1] = waiting(a, g)
    end
  end
  chunked('ZREM', K_RUNNING, ids, 1)
  if #ready > 0 then
    zadd(K_READY, ready)
    chunked('HSET', K_STATE, sset, 2)
    redis.call('HINCRBY', K_STATS, 'reaped', #ready / 2)
  end
  local buried = write_dead(gr)
  if buried > 0 then
    redis.call('HINCRBY', K_STATS, 'lease_expired', buried)
  end
  return #ready / 2, buried
end

-- Moves up to `limit` due scheduled jobs to ready, keeping the run-at as ready score.
local function promote(limit)
  local due = redis.call('ZRANGEBYSCORE', K_SCHED, '-inf', NOW_S, 'LIMIT', 0, limit, 'WITHSCORES')
  if #due == 0 then
    return 0
  end
  local z, ids = {}, {}
  for i = 1, #due, 2 do
    z[#z + 1] = due[i + 1]
    z[#z + 1] = due[i]
    ids[#ids + 1] = due[i]
  end
  zadd(K_READY, z)
  chunked('ZREM', K_SCHED, ids, 1)
  return #ids
end

-- ---------------------------------------------------------------------------------------------
