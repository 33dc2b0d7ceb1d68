-- pause.lua: pause claims for every worker until a time (45009: daily quota spent), or resume.
-- Pausing never shortens an existing pause: two workers hitting the quota keep the later end.
-- KEYS[1..17] the queue's keys, see lib.lua (pause is written)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] until (ms); "0" resumes now   ARGV[6] reason
-- returns: the pause end in force after the call (ms), 0 when not paused
local until_ms = tonumber(ARGV[5])
if until_ms == 0 then
  redis.call('DEL', K_PAUSE)
  redis.call('PUBLISH', K_WAKE, '1')
  return 0
end
local cur = tonumber(redis.call('HGET', K_PAUSE, 'until') or 0) or 0
if until_ms > cur then
  redis.call('HSET', K_PAUSE, 'until', ARGV[5], 'reason', ARGV[6])
  redis.call('HINCRBY', K_STATS, 'pauses', 1)
  cur = until_ms
end
if cur <= NOW then
  return 0
end
return cur
