-- results_page.lua: one page of a batch's result rows, in row-number order, optionally only
-- those in one state (read only).
-- KEYS[1..17] the queue's keys, see lib.lua (none is read: the result keys derive from ARGV[3])
-- ARGV[1] now (ms)   ARGV[2] now ISO-8601   ARGV[3] key prefix   ARGV[4] events MAXLEN
-- ARGV[5] batch id   ARGV[6] state name, or "" for every row   ARGV[7] first row number
-- ARGV[8] rows at most (<= 1000)
-- (with state "pending", the pending bitmap is built into a scratch key and deleted again)
-- returns: {next row number (-1: this is the last page), the batch's created_at (ms), then per
--          row: row number, "env/appid|" .. row ("env/appid|" alone for a pending pair, which
--          has no row yet), job id}
--          (rows whose pair has no record are left out)
-- Cost: O(page) for all rows; with a state, one BITPOS per row returned (a scan of the
-- state's bitmap, 1 bit per row of the batch, at memory speed).
local batch = ARGV[5]
local rkey = results_key(batch)
local seqkey = rkey .. ':seq'
local state, cursor, limit = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local seqs = {}
local nxt = -1
local n = redis.call('STRLEN', seqkey) / SEQ_WIDTH
if state == '' then
  local last = math.min(cursor + limit, n) - 1
  for s = cursor, last do
    seqs[#seqs + 1] = s
  end
  if last + 1 < n then
    nxt = last + 1
  end
else
  local bm = rkey .. ':' .. state
  if state == 'pending' then
    bm = pending_bits(batch, n)
  end
  local pos = cursor
  while true do
    local s = redis.call('BITPOS', bm, 1, pos, -1, 'BIT')
    if s < 0 or s >= n then
      break
    end
    if #seqs == limit then
      nxt = s
      break
    end
    seqs[#seqs + 1] = s
    pos = s + 1
  end
  if state == 'pending' then
    redis.call('DEL', bm)
  end
end
local out = { nxt, redis.call('HGET', batch_key(batch), 'created_at') or '0' }
if #seqs == 0 then
  return out
end
local env_of = {}
local envs = redis.call('HGETALL', rkey .. ':envs')
for i = 1, #envs, 2 do
  local idx = string.match(envs[i], '^i:(%d+)$')
  if idx then
    env_of[tonumber(idx)] = envs[i + 1]
  end
end
local fields, jobs = {}, {}
for i, s in ipairs(seqs) do
  local rec = redis.call('GETRANGE', seqkey, s * SEQ_WIDTH, s * SEQ_WIDTH + SEQ_WIDTH - 1)
  local env = env_of[string.byte(rec, 1) * 256 + string.byte(rec, 2)] or ''
  fields[i] = env .. '/wx' .. string.sub(rec, 3, 18)
  jobs[i] = rec_job(rec)
end
local rows = redis.call('HMGET', rkey, unpack(fields))
for i, s in ipairs(seqs) do
  out[#out + 1] = s
  out[#out + 1] = fields[i] .. '|' .. (rows[i] or '')
  out[#out + 1] = job_id_at(batch, jobs[i])
end
return out
