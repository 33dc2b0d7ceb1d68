-- webhook_lib.lua: the webhook delivery lib, after prelude.lua at the start of every webhook
-- script (not a script of its own).
--
-- Every webhook script receives these KEYS (built by webhook.rs from keys.rs, in this order) and
-- the common ARGV of prelude.lua; script-specific ARGV start at ARGV[5].
-- KEYS[1]  envshare:{q}:events             (stream) fields type, event
-- KEYS[2]  envshare:{q}:webhook:fence      (string) last fencing token
-- KEYS[3]  envshare:{q}:webhook:endpoints  (hash)   endpoint id -> URL (password hidden)
-- KEYS[4]  envshare:{q}:webhook:errors     (hash)   endpoint id -> JSON {at_ms, error}
-- then 5 keys per endpoint (intake: every endpoint, in order; the other scripts: one endpoint):
-- KEYS[5]  envshare:{q}:webhook:EP:due     (zset)   event id -> next attempt ms (lease deadline
--                                                   while claimed)
-- KEYS[6]  envshare:{q}:webhook:EP:info    (hash)   event id -> delivery record JSON
--                                                   {type, first_ms, attempts, error, body}
-- KEYS[7]  envshare:{q}:webhook:EP:lease   (hash)   event id -> fencing token of its claim
-- KEYS[8]  envshare:{q}:webhook:EP:dead    (zset)   event id -> when it was given up (ms)
-- KEYS[9]  envshare:{q}:webhook:EP:pending (zset)   event id -> when the event was written (ms);
--                                                   every undelivered record that is not dead

local K_EVENTS, K_FENCE, K_ENDPOINTS, K_ERRORS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_DUE, K_INFO, K_LEASE, K_DEAD, K_PENDING = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
