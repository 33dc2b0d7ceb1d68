-- heartbeat.lua: record the worker as alive and extend the leases it still holds.
-- Fenced: a lease whose token no longer matches (reaped, re-leased) is reported as lost.
-- KEYS[1..17] the queue's keys, see lib.lua (workers and running are written)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] worker id   ARGV[6] lease (ms)
-- ARGV[7] number of leases (<= 500), then per lease: id, fence
-- returns: {extended, {1-based indexes of the lost leases in ARGV order}}
redis.call('ZADD', K_WORKERS, NOW_S, ARGV[5])
local deadline = int(NOW + tonumber(ARGV[6]))
local n = tonumber(ARGV[7])
local ids = argv_ids(8, n, 2)
local states = chunked_get('HMGET', K_STATE, ids)
local run, lost = {}, {}
for r = 1, n do
  if holds(states[r], ARGV[7 + 2 * r]) then
    run[#run + 1] = deadline
    run[#run + 1] = ids[r]
  else
    lost[#lost + 1] = r
  end
end
if #run > 0 then
  -- XX: never re-create a running entry that another script removed.
  for i = 1, #run, 1000 do
    redis.call('ZADD', K_RUNNING, 'XX', unpack(run, i, math.min(i + 999, #run)))
  end
end
return { #run / 2, lost }
