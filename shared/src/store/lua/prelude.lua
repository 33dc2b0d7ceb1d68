-- prelude.lua: the start of every queue and confirmation script (not a script of its own): the
-- common ARGV, stream writes, fencing and batch keys. The family's lib follows it (lib.lua for
-- the queue, confirm_lib.lua for confirmation: it names the KEYS and binds the events stream),
-- then the script's body.
--
-- Every such script receives the same first four ARGV; script-specific ARGV start at ARGV[5].
-- ARGV[1]  now (ms)
-- ARGV[2]  now as ISO-8601 UTC (the `at` of events rendered here)
-- ARGV[3]  key prefix "envshare:{q}:" (batch hashes are PREFIX .. "batch:" .. id)
-- ARGV[4]  events stream MAXLEN (approximate trim)

local NOW_S = ARGV[1]
local NOW = tonumber(ARGV[1])
local AT = ARGV[2]
local PREFIX = ARGV[3]
local MAXLEN = ARGV[4]

local function int(n)
  return string.format('%d', n)
end

-- JSON written the way serde_json writes it, so an event rendered here is byte for byte the
-- one Rust would write (cjson orders keys by hash and escapes '/'). json_str escapes '"', '\\'
-- and control characters only; json_object takes {key, value, key, value, ...} in field order,
-- values being strings, integers or cjson.null. Keys are fixed names that need no escaping.
local JSON_ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function json_str(s)
  return '"' .. (string.gsub(s, '[%z\1-\31"\\]', function(c)
    return JSON_ESCAPES[c] or string.format('\\u%04x', string.byte(c))
  end)) .. '"'
end
local function json_object(fields)
  local out = {}
  for i = 1, #fields, 2 do
    local v = fields[i + 1]
    local t = type(v)
    if t == 'string' then
      v = json_str(v)
    elseif t == 'number' then
      v = int(v)
    else
      v = 'null'
    end
    out[#out + 1] = '"' .. fields[i] .. '":' .. v
  end
  return '{' .. table.concat(out, ',') .. '}'
end

-- The hash of batch `id` (counters and flags; keys.rs builds the same name in Keys::batch).
local function batch_key(id)
  return PREFIX .. 'batch:' .. id
end

-- The writers of the events stream `key`: xadd(type, json) appends one entry with the fields
-- `type` and `event`; trim_events() writes what xadd still holds and trims the stream. The
-- stream is trimmed once per script call, by the call's last XADD (MAXLEN ~ on that one only):
-- the same approximate trim without an XTRIM call (each redis.call costs a few µs whatever it
-- does) and without three extra arguments on every XADD. So xadd holds its entry until the
-- next xadd or trim_events: every script that may add events MUST end with trim_events
-- (directly or through its lib's flush), or its last event is not written.
local function event_stream(key)
  local held_kind, held_json = nil, nil
  local function xadd(kind, json)
    if held_kind then
      redis.call('XADD', key, '*', 'type', held_kind, 'event', held_json)
    end
    held_kind, held_json = kind, json
  end
  local function trim_events()
    if held_kind then
      redis.call('XADD', key, 'MAXLEN', '~', MAXLEN, '*', 'type', held_kind, 'event', held_json)
      held_kind, held_json = nil, nil
    end
  end
  return xadd, trim_events
end

-- The batch.confirmed writer on the stream of `xadd`: confirm(id) emits batch.confirmed (once:
-- the `confirmed` field guards it) when batch `id` has completed (every share request ended)
-- and each accepted appid is bound or unconfirmed, and says whether it did. Called where
-- either can become true: a batch completing (lib.lua) and a confirmation settling
-- (confirm_lib.lua). Like batch.completed, it carries the trace id of the import that created
-- the batch, if traced.
local function batch_confirmer(xadd)
  return function(id)
    local key = batch_key(id)
    local h = redis.call('HMGET', key, 'completed', 'confirmed', 'accepted', 'bound',
      'unconfirmed', 'trace')
    if h[1] ~= '1' or h[2] == '1' then
      return false
    end
    local acc = tonumber(h[3] or 0) or 0
    local b = tonumber(h[4] or 0) or 0
    local u = tonumber(h[5] or 0) or 0
    if b + u < acc then
      return false
    end
    redis.call('HSET', key, 'confirmed', '1', 'confirmed_at', NOW_S)
    local e = {
      'v', 1, 'id', 'batch.' .. id .. '.confirmed', 'at', AT, 'type', 'batch.confirmed',
      'batch_id', id, 'accepted', acc, 'bound', b, 'unconfirmed', u,
    }
    if h[6] then
      e[#e + 1] = 'trace_id'
      e[#e + 1] = h[6]
    end
    xadd('batch.confirmed', json_object(e))
    return true
  end
end

-- Fencing: a job's lease record starts with its fencing token and a ':' ("fence:attempts:worker",
-- see lib.lua). `holds` is the one check that an ack, heartbeat or release comes from the
-- current lease: whether `record` is the lease with token `fence` (ARGV digits). A waiting
-- record ("attempts") never holds. Builds no string, unlike a pattern capture.
local function holds(record, fence)
  return record and string.find(record, fence, 1, true) == 1
    and string.byte(record, #fence + 1) == 58
end

-- Per-appid results of batch `b` (keys.rs: Keys::results*), one row per (env, appid) pair:
--   PREFIX .. 'results:' .. b            hash    "env/appid" -> row, once the pair has left
--                                                pending (a pair without a row is pending)
--   PREFIX .. 'results:' .. b .. ':seq'  string  22 bytes per row number, written at enqueue:
--                                                env index (2 bytes, big-endian), the appid's
--                                                16 hex digits, the job index (4 bytes)
--   PREFIX .. 'results:' .. b .. ':envs' hash    "n" -> envs so far, "e:" .. env -> index,
--                                                "i:" .. index -> env
--   PREFIX .. 'results:' .. b .. ':jobs' string  the batch's job ids by job index (26
--                                                characters each: generated ids are ULIDs)
--   PREFIX .. 'results:' .. b .. ':' .. state   bitmap of the row numbers in that state, for
--                                                every state but pending (pending = no bit)
-- A row is "S|SEQ|UPDATED|ATTEMPTS|ERRCODE|REASON|JOB|URL|ERRMSG": S a state code (STATES),
-- SEQ the row number (0-based, the order the batch's pairs were enqueued), UPDATED unix
-- seconds, ERRCODE and REASON empty when none, JOB the job's index in the batch, URL the
-- confirmation URL ('|' written as %7C), ERRMSG the rest of the row. Rows of acks are rendered
-- by the worker (store/results.rs, render_row); a write sets the row and moves its bit between
-- two state bitmaps, in the same script as the state change and its events.
local STATES = { p = 'pending', a = 'accepted', f = 'failed', b = 'bound', u = 'unconfirmed',
  c = 'cancelled', x = 'unshared' }
local ENDED = { 'accepted', 'failed', 'bound', 'unconfirmed', 'cancelled', 'unshared' }
local SEQ_WIDTH = 22
local JOB_WIDTH = 26
local NOW_SECS = string.format('%d', math.floor(tonumber(ARGV[1]) / 1000))

local function results_key(b)
  return PREFIX .. 'results:' .. b
end

-- Every key of batch `b`'s results (for PEXPIRE).
local function results_keys(b)
  local base = results_key(b)
  local out = { base, base .. ':seq', base .. ':envs', base .. ':jobs' }
  for _, s in ipairs(ENDED) do
    out[#out + 1] = base .. ':' .. s
  end
  return out
end

-- The bitmap of the pending rows of batch `b` (`n` rows): the complement of every other
-- state's, built into a scratch key that the caller deletes. Returns the key.
local function pending_bits(b, n)
  local base = results_key(b)
  local tmp = base .. ':scratch'
  local srcs = {}
  for _, s in ipairs(ENDED) do
    srcs[#srcs + 1] = base .. ':' .. s
  end
  redis.call('BITOP', 'OR', tmp, unpack(srcs))
  -- Pad to the row count so BITOP NOT covers every row.
  if n > 0 then
    redis.call('SETBIT', tmp, n - 1, redis.call('GETBIT', tmp, n - 1))
  end
  redis.call('BITOP', 'NOT', tmp, tmp)
  return tmp
end

-- A row from its parts (strings; numbers already formatted).
local function row(code, seq, attempts, errcode, reason, job, url, errmsg)
  return code .. '|' .. seq .. '|' .. NOW_SECS .. '|' .. attempts .. '|' .. errcode .. '|'
    .. reason .. '|' .. job .. '|' .. url .. '|' .. errmsg
end

-- The id of the job with index `ji` (a string of digits) in batch `b`.
local function job_id_at(b, ji)
  local n = tonumber(ji)
  if not n then
    return ''
  end
  local at = n * JOB_WIDTH
  return redis.call('GETRANGE', results_key(b) .. ':jobs', at, at + JOB_WIDTH - 1)
end

-- The job index in a seq record.
local function rec_job(rec)
  local b1, b2, b3, b4 = string.byte(rec, 19, 22)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end

-- This call's result writes, flushed once per batch by results_flush: rows to HSET or HDEL
-- and, per bitmap key, BITFIELD SET operations.
local res_rows, res_row_order = {}, {}
local res_del, res_del_order = {}, {}
local res_bits, res_bit_order = {}, {}
local function set_bit(key, seq, v)
  local ops = res_bits[key]
  if not ops then
    ops = {}
    res_bits[key] = ops
    res_bit_order[#res_bit_order + 1] = key
  end
  local n = #ops
  ops[n + 1] = 'SET'
  ops[n + 2] = 'u1'
  ops[n + 3] = seq
  ops[n + 4] = v
end
local function push(map, order, key, a, b)
  local list = map[key]
  if not list then
    list = {}
    map[key] = list
    order[#order + 1] = key
  end
  list[#list + 1] = a
  if b then
    list[#list + 1] = b
  end
end

-- Per batch, its results key and its state bitmaps' keys by state code, built once per call
-- (a concatenation per row costs as much as the row's bit).
local row_keys = {}
local function keys_of(b)
  local k = row_keys[b]
  if not k then
    k = { key = results_key(b) }
    row_keys[b] = k
  end
  return k
end
local function state_key(k, code)
  local v = k[code]
  if not v then
    v = k.key .. ':' .. STATES[code]
    k[code] = v
  end
  return v
end

-- Writes row `r` (number `seq`, a string) of pair `field` in batch `b`, moving it from state
-- code `from` to `to`; moving to pending ('p') removes the row.
local function put_row(b, field, seq, from, to, r)
  local k = keys_of(b)
  if to == 'p' then
    push(res_del, res_del_order, k.key, field)
  else
    push(res_rows, res_row_order, k.key, field, r)
  end
  if from ~= to then
    if from ~= 'p' then
      set_bit(state_key(k, from), seq, '0')
    end
    if to ~= 'p' then
      set_bit(state_key(k, to), seq, '1')
    end
  end
end

-- Moves the existing row of `field` in batch `b` to state `to` (keeping the rest), only from
-- a state in `from_ok` (a set of codes; a pair without a row is pending). Returns whether a
-- row was moved.
local function restate(b, field, from_ok, to)
  local r = redis.call('HGET', results_key(b), field)
  if not r then
    return false
  end
  local code, seq, rest = string.match(r, '^(%a)|(%d+)|%d*|(.*)$')
  if not code or not from_ok[code] then
    return false
  end
  put_row(b, field, seq, code, to, to .. '|' .. seq .. '|' .. NOW_SECS .. '|' .. rest)
  return true
end

-- Writes this call's rows and bits.
local function results_flush()
  for _, key in ipairs(res_row_order) do
    local rows = res_rows[key]
    for i = 1, #rows, 1000 do
      redis.call('HSET', key, unpack(rows, i, math.min(i + 999, #rows)))
    end
  end
  for _, key in ipairs(res_del_order) do
    local fields = res_del[key]
    for i = 1, #fields, 1000 do
      redis.call('HDEL', key, unpack(fields, i, math.min(i + 999, #fields)))
    end
  end
  for _, key in ipairs(res_bit_order) do
    local ops = res_bits[key]
    for i = 1, #ops, 1000 do
      redis.call('BITFIELD', key, unpack(ops, i, math.min(i + 999, #ops)))
    end
  end
  res_rows, res_row_order, res_bits, res_bit_order = {}, {}, {}, {}
  res_del, res_del_order = {}, {}
end
