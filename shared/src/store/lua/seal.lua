-- seal.lua: mark a batch as fully enqueued; batch.completed can only fire once it is sealed.
-- KEYS[1..17] the queue's keys, see lib.lua (batches, events and the batch hash are written)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] batch id
-- returns: 1 when sealing completed the batch (every job had already ended; batch.completed
--          was emitted now), 0 otherwise (also when it was sealed or completed before)
local id = ARGV[5]
local key = batch_key(id)
redis.call('HSET', key, 'sealed', '1')
redis.call('HSETNX', key, 'created_at', NOW_S)
redis.call('ZADD', K_BATCHES, 'NX', NOW_S, id)
local h = redis.call('HMGET', key, 'jobs', 'done_jobs', 'sealed', 'completed', 'appids',
  'accepted', 'failed', 'ttl', 'trace')
if maybe_complete(id, key, h) then
  trim_events()
  return 1
end
return 0
