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
