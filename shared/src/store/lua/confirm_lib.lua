-- confirm_lib.lua: the confirmation lib, after prelude.lua at the start of every confirmation
-- script (not a script of its own).
--
-- Every confirmation script receives the same KEYS (built by confirm.rs from keys.rs, in this
-- order) and the common ARGV of prelude.lua; script-specific ARGV start at ARGV[5].
-- KEYS[1]  envshare:{q}:events        (stream) fields type, event
-- KEYS[2]  envshare:{q}:confirm       (zset)   entry id -> next check ms (lease deadline if
--                                              claimed)
-- KEYS[3]  envshare:{q}:confirm:info  (hash)   entry id -> JSON {env, appid, batch_id, job_id,
--                                              accepted_at, checks}
-- KEYS[4]  envshare:{q}:confirm:lease (hash)   entry id -> fencing token of its claim (the
--                                              token alone: the whole record is compared)
-- KEYS[5]  envshare:{q}:confirm:fence (string) last fencing token
-- KEYS[6]  envshare:{q}:stats         (hash)   the queue's counters (read: completed,
--                                              completed_direct)
-- KEYS[7]  envshare:{q}:confirm:caught_up (string) completed - completed_direct when the stream
--                                              intake last had read the whole stream
-- KEYS[8]  envshare:{q}:batches       (zset)   batch id -> creation ms (read by the sweep)
-- KEYS[9]  envshare:{q}:confirm:sweep (string) the rank in KEYS[8] where the next sweep of
--                                              batches starts (confirm_follow.lua)
--
-- Entries enter the schedule in complete.lua, in the step that accepts the share. Workers of
-- earlier versions did not do that: their share.accepted events are scheduled by the stream
-- intake (confirm_intake.lua), which the watchers run only while such events may be unread
-- (confirm_follow.lua).

local K_EVENTS, K_CONFIRM, K_INFO, K_LEASE, K_FENCE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_STATS, K_CAUGHT_UP, K_BATCHES, K_SWEEP = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local xadd, trim_events = event_stream(K_EVENTS)

local maybe_confirm = batch_confirmer(xadd)
