-- results_find.lua: the result rows of one appid in every batch on record, newest batch first
-- (read only).
-- KEYS[1..17] the queue's keys, see lib.lua (batches is read)
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] appid
-- returns: {batch id, "env/appid|" .. row, job id, batch created_at (ms), row number, …}; a
--          pair still pending has no row: "env/appid|" alone (its share is queued, running or
--          waiting for a retry), with its row number (for a row, the row carries it: "")
-- Cost: O(batches on record x envs per batch): one HGET per (batch, env); plus, for a batch
-- that has not completed (only those can hold pending pairs), one scan of its row numbers (22
-- bytes per pair, at memory speed) for the pairs that have no row yet.
local appid = ARGV[5]
local hex = string.sub(appid, 3)
local out = {}
local function emit(b, raw, job, created, seq)
  out[#out + 1] = b
  out[#out + 1] = raw
  out[#out + 1] = job
  out[#out + 1] = created or '0'
  out[#out + 1] = seq or ''
end
for _, b in ipairs(redis.call('ZREVRANGE', K_BATCHES, 0, -1)) do
  local rkey = results_key(b)
  local envs = redis.call('HGETALL', rkey .. ':envs')
  local env_of, found = {}, {}
  for i = 1, #envs, 2 do
    local idx = string.match(envs[i], '^i:(%d+)$')
    if idx then
      local env = envs[i + 1]
      env_of[tonumber(idx)] = env
      local field = env .. '/' .. appid
      local r = redis.call('HGET', rkey, field)
      if r then
        found[field] = true
        emit(b, field .. '|' .. r,
          job_id_at(b, string.match(r, '^%a|%d+|%d*|%d*|[^|]*|[^|]*|(%d*)|')))
      end
    end
  end
  local h = redis.call('HMGET', batch_key(b), 'completed', 'created_at')
  if h[1] ~= '1' and next(env_of) then
    -- The appid's hex digits sit at byte 3 of a seq record (see prelude.lua).
    local seqs = redis.call('GET', rkey .. ':seq') or ''
    local at = 1
    while true do
      local s = string.find(seqs, hex, at, true)
      if not s then
        break
      end
      if (s - 3) % SEQ_WIDTH == 0 then
        local rec = string.sub(seqs, s - 2, s - 3 + SEQ_WIDTH)
        local env = env_of[string.byte(rec, 1) * 256 + string.byte(rec, 2)]
        if env then
          local field = env .. '/' .. appid
          if not found[field] then
            found[field] = true
            emit(b, field .. '|', job_id_at(b, rec_job(rec)), h[2], int((s - 3) / SEQ_WIDTH))
          end
        end
      end
      at = s + 1
    end
  end
end
return out
