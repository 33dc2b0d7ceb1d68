-- results_find.lua: the result rows of one appid in every batch on record, newest batch first
-- (read only).
-- KEYS[1..15] the queue's keys, see lib.lua (batches is read)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] appid
-- returns: {batch id, "env/appid|" .. row, …}
-- Cost: O(batches on record x envs per batch): one HGET per (batch, env).
local appid = ARGV[5]
local out = {}
for _, b in ipairs(redis.call('ZREVRANGE', K_BATCHES, 0, -1)) do
  local rkey = results_key(b)
  local envs = redis.call('HGETALL', rkey .. ':envs')
  for i = 1, #envs, 2 do
    local env = string.match(envs[i], '^e:(.+)$')
    if env then
      local field = env .. '/' .. appid
      local r = redis.call('HGET', rkey, field)
      if r then
        out[#out + 1] = b
        out[#out + 1] = field .. '|' .. r
      end
    end
  end
end
return out
