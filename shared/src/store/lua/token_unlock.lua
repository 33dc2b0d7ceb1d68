-- Releases the token fetch lock only if the caller still owns it (compare-and-delete).
--
-- KEYS[1] envshare:{q}:token:lock  (string: owner id)
-- ARGV[1] owner id of the caller
-- returns: 1 released, 0 not ours (expired, or taken by another process since)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
