-- callback_apply.lua: applies one verified push of the WeChat callback, and remembers its nonce,
-- in one script: a push re-sent after a lost answer is answered without being applied again,
-- and of two tickets pushed at once the older can never end up stored.
-- KEYS[1] envshare:{q}:ticket                (hash)   ticket, set_at (ms), create_time (s)
-- KEYS[2] envshare:{q}:callback:nonce:NONCE  (string) the msg_signature of the push that used
--                                            NONCE, kept for the replay window
-- KEYS[3] envshare:{q}:callback:seen:ID      (string) an app.* event id already written
-- KEYS[4] envshare:{q}:stats                 (hash)   counters
-- KEYS[5] envshare:{q}:events                (stream) fields type, event
-- ARGV[1] msg_signature   ARGV[2] nonce TTL (ms)   ARGV[3] mode: ticket | event | ignore
-- mode ticket: ARGV[4] ticket   ARGV[5] CreateTime (s)   ARGV[6] now (ms)
-- mode event:  ARGV[4] type     ARGV[5] event JSON       ARGV[6] seen TTL (ms)   ARGV[7] MAXLEN
-- mode ignore: ARGV[4] counter field
-- returns: 1 applied (ticket stored, event written, ignored push counted), 2 repeat (nothing
-- written), 3 ticket not newer than the stored one (kept), -1 nonce already used by another push
local K_TICKET, K_NONCE, K_SEEN, K_STATS, K_EVENTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sig, mode = ARGV[1], ARGV[3]

local used = redis.call('GET', K_NONCE)
if used then
  if used == sig then
    redis.call('HINCRBY', K_STATS, 'callback_repeats', 1)
    return 2
  end
  return -1
end
redis.call('SET', K_NONCE, sig, 'PX', ARGV[2])

if mode == 'ticket' then
  local ct = tonumber(ARGV[5])
  local cur = tonumber(redis.call('HGET', K_TICKET, 'create_time') or '')
  if cur and ct <= cur then
    if ct == cur and redis.call('HGET', K_TICKET, 'ticket') == ARGV[4] then
      redis.call('HINCRBY', K_STATS, 'callback_repeats', 1)
      return 2
    end
    redis.call('HINCRBY', K_STATS, 'callback_stale_tickets', 1)
    return 3
  end
  redis.call('HSET', K_TICKET, 'ticket', ARGV[4], 'set_at', ARGV[6], 'create_time', ARGV[5])
  redis.call('HINCRBY', K_STATS, 'callback_tickets', 1)
  return 1
elseif mode == 'event' then
  if not redis.call('SET', K_SEEN, '1', 'NX', 'PX', ARGV[6]) then
    redis.call('HINCRBY', K_STATS, 'callback_repeats', 1)
    return 2
  end
  redis.call('XADD', K_EVENTS, 'MAXLEN', '~', ARGV[7], '*', 'type', ARGV[4], 'event', ARGV[5])
  redis.call('HINCRBY', K_STATS, 'callback_app_events', 1)
  return 1
end
redis.call('HINCRBY', K_STATS, ARGV[4], 1)
return 1
