-- Cancel a task. Blocked, pending and scheduled tasks are cancelled at once (and dependents
-- that may not run without it with them); an active task is flagged
-- and its worker told on the cancel channel (it cancels the processor and reports 'cancelled';
-- should it die first, the reaper sees the flag and cancels the task).
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  task id
-- Returns: {outcome, state before, type, priority}: outcome is 'cancelled', 'requested'
--          (active: flagged), or 'final' (already finished: nothing changed); error "NOTFOUND"
--          for unknown ids.
local now, id = tonumber(ARGV[1]), ARGV[2]
local key = key_task(id)
local f = redis.call('HMGET', key, 'state', 'priority', 'type', 'worker_id')
local state, priority, ttype = f[1], f[2], f[3]
if not state then
  return redis.error_reply('NOTFOUND ' .. id)
end
if state == S_PENDING or state == S_SCHEDULED or state == S_BLOCKED then
  take_out(id, state, priority, ttype)
  make_final(id, priority, ttype, S_CANCELLED, now, {'error', 'cancelled before it ran'})
  flush()
  return {'cancelled', state, ttype, priority}
end
if state == S_ACTIVE then
  redis.call('HSET', key, 'cancel_requested', 1)
  redis.call('PUBLISH', K_CANCEL_CHANNEL, (f[4] or '') .. ' ' .. id)
  return {'requested', state, ttype, priority}
end
return {'final', state, ttype, priority}
