-- reap.lua: move leases past their deadline back to ready (the attempt stays counted) or, at
-- max attempts, to dead with reason lease_expired (share.failed per appid, batch counters).
-- claim.lua runs the same step before taking jobs; this script is for a reaper without claims.
-- KEYS[1..17] the queue's keys, see lib.lua
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] limit (<= 1000)   ARGV[6] max attempts
-- returns: {requeued, buried, {batch ids completed by this call}}
local requeued, buried = reap(tonumber(ARGV[5]), tonumber(ARGV[6]))
if requeued > 0 then
  redis.call('PUBLISH', K_WAKE, '1')
end
return { requeued, buried, flush_batches() }
