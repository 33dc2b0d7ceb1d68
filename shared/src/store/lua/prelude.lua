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
-- `type` and `event`; trim_events() trims the stream if this call appended anything. Events go
-- in without MAXLEN and the stream is trimmed once per script call: the same approximate trim,
-- without three extra arguments on every XADD. Every script that may add events ends with
-- trim_events (directly or through its lib).
local function event_stream(key)
  local added = false
  local function xadd(kind, json)
    redis.call('XADD', key, '*', 'type', kind, 'event', json)
    added = true
  end
  local function trim_events()
    if added then
      redis.call('XTRIM', key, 'MAXLEN', '~', MAXLEN)
      added = false
    end
  end
  return xadd, trim_events
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
--   PREFIX .. 'results:' .. b            hash    "env/appid" -> row
--   PREFIX .. 'results:' .. b .. ':seq'  string  18 bytes per row number: env index (2 bytes,
--                                                big-endian) and the appid's 16 hex digits
--   PREFIX .. 'results:' .. b .. ':envs' hash    "n" -> envs so far, "e:" .. env -> index,
--                                                "i:" .. index -> env
--   PREFIX .. 'results:' .. b .. ':' .. state   bitmap of the row numbers in that state
-- A row is "S|SEQ|UPDATED|ATTEMPTS|ERRCODE|REASON|JOB|URL|ERRMSG": S a state code (STATES),
-- SEQ the row number (0-based, the order the batch's pairs were enqueued), UPDATED unix
-- seconds, ERRCODE and REASON empty when none, URL the confirmation URL ('|' written as %7C),
-- ERRMSG the rest of the row. Each write sets the row and moves its bit between two state
-- bitmaps, in the same script as the state change and its events.
local STATES = { p = 'pending', a = 'accepted', f = 'failed', b = 'bound', u = 'unconfirmed',
  c = 'cancelled', x = 'unshared' }
local SEQ_WIDTH = 18
local NOW_SECS = string.format('%d', math.floor(tonumber(ARGV[1]) / 1000))

local function results_key(b)
  return PREFIX .. 'results:' .. b
end

-- Every key of batch `b`'s results (for PEXPIRE).
local function results_keys(b)
  local base = results_key(b)
  local out = { base, base .. ':seq', base .. ':envs' }
  for _, s in pairs(STATES) do
    out[#out + 1] = base .. ':' .. s
  end
  return out
end

-- A row from its parts (strings; numbers already formatted).
local function row(code, seq, attempts, errcode, reason, job, url, errmsg)
  return code .. '|' .. seq .. '|' .. NOW_SECS .. '|' .. attempts .. '|' .. errcode .. '|'
    .. reason .. '|' .. job .. '|' .. string.gsub(url, '|', '%%7C') .. '|' .. errmsg
end

-- The state code, row number, attempts, job id and URL of row `r`.
local function row_parts(r)
  return string.match(r, '^(%a)|(%d+)|%d*|(%d*)|[^|]*|[^|]*|([^|]*)|([^|]*)|')
end

-- This call's result writes, flushed once per batch by results_flush: rows to HSET and, per
-- bitmap key, BITFIELD SET operations.
local res_rows, res_row_order = {}, {}
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

-- Writes row `r` (number `seq`, a string) of pair `field` in batch `b`, moving it from state
-- code `from` (nil: a new row) to `to`.
local function put_row(b, field, seq, from, to, r)
  local key = results_key(b)
  local rows = res_rows[key]
  if not rows then
    rows = {}
    res_rows[key] = rows
    res_row_order[#res_row_order + 1] = key
  end
  rows[#rows + 1] = field
  rows[#rows + 1] = r
  if from ~= to then
    if from then
      set_bit(key .. ':' .. STATES[from], seq, '0')
    end
    set_bit(key .. ':' .. STATES[to], seq, '1')
  end
end

-- Moves the existing row of `field` in batch `b` to state `to` with reason `reason` (nil:
-- unchanged), attempts (nil: unchanged), and errcode/errmsg cleared when `clear`; only from a
-- state in `from_ok` (a set of codes). Returns whether a row was moved.
local function restate(b, field, from_ok, to, reason, attempts, clear)
  local r = redis.call('HGET', results_key(b), field)
  if not r then
    return false
  end
  local code, seq, att, ec, rs, job, url, msg =
    string.match(r, '^(%a)|(%d+)|%d*|(%d*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if not code or not from_ok[code] then
    return false
  end
  if clear then
    ec, msg = '', ''
  end
  put_row(b, field, seq, code, to, code == to and r or
    (to .. '|' .. seq .. '|' .. NOW_SECS .. '|' .. (attempts or att) .. '|' .. ec .. '|'
      .. (reason or rs) .. '|' .. job .. '|' .. url .. '|' .. msg))
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
  for _, key in ipairs(res_bit_order) do
    local ops = res_bits[key]
    for i = 1, #ops, 1000 do
      redis.call('BITFIELD', key, unpack(ops, i, math.min(i + 999, #ops)))
    end
  end
  res_rows, res_row_order, res_bits, res_bit_order = {}, {}, {}, {}
end
