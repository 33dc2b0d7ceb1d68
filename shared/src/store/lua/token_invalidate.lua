-- Deletes the cached token only if it is still the one that failed, so a worker holding a stale
-- token cannot throw away the newer one another worker already fetched.
--
-- KEYS[1] envshare:{q}:token  (string: token JSON with `generation` and `fetched_at`)
-- ARGV[1] generation of the failed token
-- ARGV[2] fetched_at (ms) of the failed token
-- returns: 1 deleted, 0 the cached token is another one (or none)
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local ok, cached = pcall(cjson.decode, raw)
if not ok then
  -- An unreadable entry is no use to anyone: drop it so the next caller fetches a fresh token.
  redis.call('DEL', KEYS[1])
  return 1
end
-- Compared as numbers: both fit a double exactly (generation is small, ms stay below 2^53).
if cached['generation'] == tonumber(ARGV[1]) and cached['fetched_at'] == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
