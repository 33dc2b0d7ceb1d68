-- Takes one slot of the global rate limit, or says how long to wait for one (GCRA).
--
-- The key holds the theoretical arrival time (TAT, µs): when the next call would be due if calls
-- came exactly at the rate. A call is allowed while now >= TAT - tolerance; each allowed call
-- moves TAT on by one interval. With tolerance 0 (burst 1) calls are spaced evenly, never
-- bunched. Time is Redis's own clock (TIME), so every host shares one clock; Redis 7 replicates
-- the effects of a script, so reading TIME before a write is allowed.
--
-- KEYS[1] envshare:{q}:rate  (string: TAT in µs since the Unix epoch)
-- ARGV[1] emission interval (µs, integer >= 1) = 1e6 / calls per second
-- ARGV[2] burst tolerance (µs, integer >= 0) = (burst - 1) * interval
-- returns: 0 go (a slot was taken), or N >= 1: ms to wait before asking again
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local raw = redis.call('GET', KEYS[1])
local tat = raw and tonumber(raw) or now
if tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return math.ceil((allow_at - now) / 1000)
end
local new_tat = tat + interval
-- The key outlives its TAT by a second, then an idle limiter leaves nothing behind.
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return 0
