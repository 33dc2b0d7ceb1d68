-- Stores a freshly fetched component access token, but only while the caller still owns the
-- fetch lock: a fetcher whose lock expired mid-fetch must not overwrite a newer token. Releases
-- the lock in the same step. The refresh counter doubles as the token's generation number.
--
-- KEYS[1] envshare:{q}:token       (string: token JSON)
-- KEYS[2] envshare:{q}:token:lock  (string: owner id of the fetch lock)
-- KEYS[3] envshare:{q}:stats       (hash: field `token_refreshes`)
-- ARGV[1] lock owner id
-- ARGV[2] token JSON without its closing part: `{..., "generation":` (the script appends N `}`)
-- ARGV[3] time to live of the token key (ms, > 0)
-- returns: the new generation (>= 1), or 0 if the lock is no longer ours (nothing written)
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local generation = redis.call('HINCRBY', KEYS[3], 'token_refreshes', 1)
redis.call('SET', KEYS[1], ARGV[2] .. generation .. '}', 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return generation
