-- confirm_lib.lua: the confirmation lib, after prelude.lua at the start of every confirmation
-- script (not a script of its own).
--
-- Every confirmation script receives the same KEYS (built by confirm.rs from keys.rs, in this
-- order) and the common ARGV of prelude.lua; script-specific ARGV start at ARGV[5].
-- KEYS[1]  envshare:{q}:events        (stream) fields type, event
-- KEYS[2]  envshare:{q}:confirm       (zset)   entry id -> next check ms (lease deadline if
--                                              claimed)
-- KEYS[3]  envshare:{q}:confirm:info  (hash)   entry id -> JSON {env, appid, batch_id, job_id,
--                                              accepted_at, checks}
-- KEYS[4]  envshare:{q}:confirm:lease (hash)   entry id -> fencing token of its claim (the
--                                              token alone: the whole record is compared)
-- KEYS[5]  envshare:{q}:confirm:fence (string) last fencing token

local K_EVENTS, K_CONFIRM, K_INFO, K_LEASE, K_FENCE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local xadd, trim_events = event_stream(K_EVENTS)

-- Emits batch.confirmed (once: the `confirmed` field guards it) when the batch has completed
-- (every share request ended) and each accepted appid is bound or unconfirmed. Like
-- batch.completed, it carries the trace id of the import that created the batch, if traced.
local function maybe_confirm(id)
  local key = batch_key(id)
  local h = redis.call('HMGET', key, 'completed', 'confirmed', 'accepted', 'bound', 'unconfirmed',
    'trace')
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
