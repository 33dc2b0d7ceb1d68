-- lib.lua: shared prelude, prepended to every queue script (not a script of its own).
--
-- Every script receives the same KEYS (built by keys.rs, in this order) and the same first
-- four ARGV; script-specific ARGV start at ARGV[5].
-- KEYS[1]  envshare:{q}:jobs       (hash)   job id -> payload JSON
-- KEYS[2]  envshare:{q}:ready      (zset)   job id -> ms it became ready
-- KEYS[3]  envshare:{q}:scheduled  (zset)   job id -> run-at ms
-- KEYS[4]  envshare:{q}:running    (zset)   job id -> lease deadline ms
-- KEYS[5]  envshare:{q}:state      (hash)   job id -> "attempts" or "fence:attempts:worker";
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
-- ARGV[1]  now (ms)
-- ARGV[2]  now as ISO-8601 UTC (the `at` of events rendered here)
-- ARGV[3]  key prefix "envshare:{q}:" (batch hashes are PREFIX .. "batch:" .. id)
-- ARGV[4]  events stream MAXLEN (approximate trim)

local K_JOBS, K_READY, K_SCHED, K_RUNNING, K_STATE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_FENCE, K_DEAD, K_DEAD_INFO, K_EVENTS, K_DEDUPE = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local K_PAUSE, K_WORKERS, K_STATS, K_BATCHES, K_WAKE = KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local NOW_S = ARGV[1]
local NOW = tonumber(ARGV[1])
local AT = ARGV[2]
local PREFIX = ARGV[3]
local MAXLEN = ARGV[4]

-- Lua's unpack() fails past a few thousand values, so variadic commands take bounded slices.
local CHUNK = 1000

local function int(n)
  return string.format('%d', n)
end

-- Calls `cmd key v1 v2 ...` over `items` in slices of at most CHUNK values; `width` is the
-- number of values per record (2 for ZADD score/member, HSET field/value), so no record is split.
local function chunked(cmd, key, items, width)
  local n = #items
  local step = CHUNK - (CHUNK % width)
  for i = 1, n, step do
    redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, n)))
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

-- "attempts" (waiting) or "fence:attempts:worker" (leased) -> attempts (number), fence (string
-- or nil).
local function parse_state(s)
  if not s then
    return 0, nil
  end
  local f, a = string.match(s, '^(%d+):(%d+)')
  if f then
    return tonumber(a), f
  end
  return tonumber(s) or 0, nil
end

-- Whether state `s` is the lease with fencing token `fence` (ARGV digits): the token is the
-- prefix up to the first ':'. Builds no string, unlike a pattern capture.
local function holds(s, fence)
  return s and string.find(s, fence, 1, true) == 1 and string.byte(s, #fence + 1) == 58
end

-- Decimal digits, and strings of small counts, so the hot paths skip a sprintf for them.
local DIGITS = { [0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' }
local SMALL = { '1', '2', '3', '4', '5', '6', '7', '8', '9', '10' }
SMALL[0] = '0'
local function small(n)
  return SMALL[n] or int(n)
end
-- The reverse: ARGV counts (mostly 0 or 1) without strtod.
local COUNT = { ['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5, ['6'] = 6,
  ['7'] = 7, ['8'] = 8, ['9'] = 9, ['10'] = 10 }
local function count(s)
  return COUNT[s] or tonumber(s)
end

-- A hash of at most hash-max-listpack-entries (128..512) small fields is stored as a listpack,
-- where HGET/HSET/HDEL scan every field: with a few hundred jobs in flight that linear scan
-- was a fifth of Redis's CPU. One value longer than hash-max-listpack-value (64) keeps the state
-- hash a real hash table for good, so every per-job access is O(1). The field name cannot be a
-- job id (ids have no ':'); HLEN of this hash is not used anywhere.
local PIN = ':encoding'
local PIN_VALUE = 'this value is longer than hash-max-listpack-value so the hash stays a hash table'
local function pin_state()
  redis.call('HSETNX', K_STATE, PIN, PIN_VALUE)
end

-- Events are appended without MAXLEN and the stream is trimmed once per script call (see
-- trim_events): the same approximate trim, without three extra arguments on every XADD.
local events_added = false
local function xadd(kind, json)
  redis.call('XADD', K_EVENTS, '*', 'type', kind, 'event', json)
  events_added = true
end

local function trim_events()
  if events_added then
    redis.call('XTRIM', K_EVENTS, 'MAXLEN', '~', MAXLEN)
    events_added = false
  end
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

-- Emits batch.completed if the batch is sealed, every job has ended and it was never emitted.
-- `h` is HMGET jobs done_jobs sealed completed appids accepted failed (after this call's deltas).
local function maybe_complete(id, key, h)
  local jobs, done = tonumber(h[1] or 0) or 0, tonumber(h[2] or 0) or 0
  if h[3] == '1' and h[4] ~= '1' and done >= jobs then
    redis.call('HSET', key, 'completed', '1', 'completed_at', NOW_S)
    xadd('batch.completed', cjson.encode({
      v = 1, id = 'batch.' .. id .. '.completed', type = 'batch.completed', at = AT,
      batch_id = id, total = tonumber(h[5] or 0) or 0, accepted = tonumber(h[6] or 0) or 0,
      failed = tonumber(h[7] or 0) or 0,
    }))
    return true
  end
  return false
end

-- Writes this call's batch deltas (one HMGET + one HSET per batch), trims the events stream if
-- this call added events, and returns the ids of the batches that completed now. Every script
-- that may add events calls it last (seal.lua calls trim_events itself).
local function flush_batches()
  local completed = {}
  for _, id in ipairs(batch_order) do
    local d = batch_delta[id]
    local key = PREFIX .. 'batch:' .. id
    local h = redis.call('HMGET', key, 'jobs', 'done_jobs', 'sealed', 'completed', 'appids',
      'accepted', 'failed')
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

local function share_failed(p, job_id, appid, attempts, errmsg, reason)
  return cjson.encode({
    v = 1, id = job_id .. '.' .. int(p.gen or 0) .. '.' .. appid, type = 'share.failed', at = AT,
    job_id = job_id, batch_id = p.batch, env = p.env, appid = appid, confirm_url = cjson.null,
    attempts = attempts, errcode = cjson.null, errmsg = errmsg, reason = reason,
  })
end

-- Writes jobs to dead: `gone` ids leave `state`, `dead` is ZADD pairs (died ms, id), `info` is
-- HSET pairs (id, JSON), `free` the dedupe members to release (a re-import retries them).
local function write_dead(gone, dead, info, free)
  chunked('HDEL', K_STATE, gone, 1)
  chunked('ZADD', K_DEAD, dead, 2)
  chunked('HSET', K_DEAD_INFO, info, 2)
  if #free > 0 then
    chunked('ZREM', K_DEDUPE, free, 1)
  end
  redis.call('HINCRBY', K_STATS, 'dead', #gone)
end

-- Ends the leases of `moved` (job ids): out of running, into the sorted set `zset` with the
-- ZADD pairs `z`, their state records set from the HSET pairs `sset`.
local function unlease(moved, zset, z, sset)
  chunked('ZREM', K_RUNNING, moved, 1)
  chunked('ZADD', zset, z, 2)
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
  local ready, sset, dead, info, gone, free = {}, {}, {}, {}, {}, {}
  -- A requeued orphan goes to the FRONT of ready (just ahead of the oldest ready job): it has
  -- waited its turn once already, and a crash must not send it behind the whole backlog.
  local head = redis.call('ZRANGE', K_READY, 0, 0, 'WITHSCORES')
  local requeue_at = NOW_S
  if head[2] and tonumber(head[2]) <= NOW then
    requeue_at = int(tonumber(head[2]) - 1)
  end
  for i, id in ipairs(ids) do
    local a = parse_state(states[i])
    if a >= max_attempts then
      gone[#gone + 1] = id
      dead[#dead + 1] = NOW_S
      dead[#dead + 1] = id
      info[#info + 1] = id
      info[#info + 1] = cjson.encode({ reason = 'lease_expired', errcode = cjson.null,
        errmsg = 'lease expired', attempts = a, at = NOW })
      -- Rare path: only a job dying here needs its payload, for its events.
      local raw = redis.call('HGET', K_JOBS, id)
      if raw then
        local p = cjson.decode(raw)
        for _, appid in ipairs(p.appids) do
          xadd('share.failed', share_failed(p, id, appid, a, 'lease expired', 'lease_expired'))
          free[#free + 1] = p.env .. '/' .. appid
        end
        bump_batch(p.batch, 1, 0, #p.appids)
      end
    else
      ready[#ready + 1] = requeue_at
      ready[#ready + 1] = id
      sset[#sset + 1] = id
      sset[#sset + 1] = int(a)
    end
  end
  chunked('ZREM', K_RUNNING, ids, 1)
  if #ready > 0 then
    chunked('ZADD', K_READY, ready, 2)
    chunked('HSET', K_STATE, sset, 2)
    redis.call('HINCRBY', K_STATS, 'reaped', #ready / 2)
  end
  if #gone > 0 then
    write_dead(gone, dead, info, free)
    redis.call('HINCRBY', K_STATS, 'lease_expired', #gone)
  end
  return #ready / 2, #gone
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
  chunked('ZADD', K_READY, z, 2)
  chunked('ZREM', K_SCHED, ids, 1)
  return #ids
end

-- ---------------------------------------------------------------------------------------------
