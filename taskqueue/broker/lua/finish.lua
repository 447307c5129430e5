-- Report how attempts ended, for a batch of tasks, in one atomic step.
-- An outcome counts only if the task is still active under the same attempt number (the lease's
-- fencing token): a worker whose lease expired and was handed to another cannot overwrite it.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  retry base delay (ms)
-- ARGV[3]  retry maximum delay (ms)
-- ARGV[4..] 6 fields per outcome: id, attempt, kind, a, b, jitter, where kind (the words of
--           taskqueue.outcomes.OutcomeKind) and a, b are
--           'succeeded'   result-JSON ''        the processor returned
--           'failed'      error     traceback  the processor raised (jitter in [0,1))
--           'timed_out'   error     traceback  the task's deadline passed: as 'failed'
--           'rejected'    error     traceback  the processor raised PermanentError:
--                                              dead-lettered at once, whatever retries were left
--           'cancelled'   reason    ''         stopped at the user's request
--           'interrupted' ''        ''         the worker shut down first, or found the task's
--                                              deadline passed before a slot took it: back to
--                                              the front of its queue, the attempt not spent
--           'snoozed'     delay ms  cap        the processor snoozed: scheduled `delay` from now
--                                              (pending when 0), the attempt not spent and
--                                              'snoozes' counted; one past the type's
--                                              max_snoozes (policy; `cap` where none is set)
--                                              dead-letters it instead
--           A task whose cancellation was requested is not retried or released: it ends
--           cancelled (as the reaper does with it), keeping a failure's error and traceback.
--           A task with a deadline whose next start (retry, snooze, release) would come after
--           it ends expired instead (keeping a failure's error and traceback).
-- A task that ends settles its dependents (see _lib.lua): they are released or cancelled here.
-- Returns: per outcome, the task's new state, or '' when the report was stale and ignored.
local now = tonumber(ARGV[1])
local base_ms, max_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local FIELDS = 6
local out = {}
local done = {}
local KINDS = {
  succeeded = true, failed = true, timed_out = true, rejected = true, cancelled = true,
  interrupted = true, snoozed = true,
}

-- Refuse a bad batch before the first write: Redis does not undo a script's writes on error.
for i = 6, #ARGV, FIELDS do
  if not KINDS[ARGV[i]] then
    return redis.error_reply('unknown outcome kind ' .. ARGV[i])
  end
end

for i = 4, #ARGV, FIELDS do
  local id, attempt, kind, a, b = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = key_task(id)
  local f = redis.call('HMGET', key, 'state', 'attempt', 'priority', 'type', 'max_retries', 'cancel_requested', 'dependents', 'unique_key', 'snoozes', 'expires_ms', 'group')
  if f[1] ~= S_ACTIVE or tonumber(f[2]) ~= attempt then
    out[#out + 1] = ''
  else
    local priority, ttype, expires, group = f[3], f[4], f[10], f[11]
    local ends = {f[7], f[8], expires}
    done[#done + 1] = id
    leave_active(priority, ttype, group)
    if kind == 'succeeded' then
      make_final(id, priority, ttype, S_SUCCEEDED, now, {'result', a}, ends)
      out[#out + 1] = S_SUCCEEDED
    elseif f[6] == '1' and kind ~= 'cancelled' then
      local released = kind == 'interrupted' or kind == 'snoozed'
      local err = released and 'cancelled at request; its worker released it first' or a
      make_final(id, priority, ttype, S_CANCELLED, now, {'error', err, 'traceback', b}, ends)
      out[#out + 1] = S_CANCELLED
    elseif kind == 'failed' or kind == 'timed_out' or kind == 'rejected' then
      -- A rejected attempt is failed as if it were the last one.
      local max_retries = kind == 'rejected' and attempt - 1 or tonumber(f[5])
      out[#out + 1] = fail_attempt(id, priority, ttype, attempt, max_retries, now, a, b,
        tonumber(ARGV[i + 5]), base_ms, max_ms, expires, group)
    elseif kind == 'cancelled' then
      make_final(id, priority, ttype, S_CANCELLED, now, {'error', a}, ends)
      out[#out + 1] = S_CANCELLED
    elseif kind == 'snoozed' then
      local snoozes = (tonumber(f[9]) or 0) + 1
      local cap = tonumber(policy_setting('max_snoozes', ttype, b))
      local delay = tonumber(a)
      if snoozes > cap then
        out[#out + 1] = fail_attempt(id, priority, ttype, attempt, attempt - 1, now,
          'snoozed more often than its max_snoozes (' .. cap .. ') allows', '', 0, base_ms, max_ms,
          false, group)
      elseif would_expire(expires, now + delay) then
        make_final(id, priority, ttype, S_EXPIRED, now,
          {'error', 'snoozed past its deadline', 'attempt', attempt - 1, 'snoozes', snoozes}, ends)
        out[#out + 1] = S_EXPIRED
      elseif delay > 0 then
        make_scheduled(id, priority, ttype, now + delay, {'attempt', attempt - 1, 'snoozes', snoozes})
        out[#out + 1] = S_SCHEDULED
      else
        make_ready(id, priority, ttype, now, false, {'attempt', attempt - 1, 'snoozes', snoozes}, group)
        out[#out + 1] = S_PENDING
      end
    elseif would_expire(expires, now) then -- interrupted past its deadline: it cannot start again
      make_final(id, priority, ttype, S_EXPIRED, now,
        {'error', 'its worker released it after its deadline', 'attempt', attempt - 1}, ends)
      out[#out + 1] = S_EXPIRED
    else -- interrupted
      make_ready(id, priority, ttype, now, true, {'attempt', attempt - 1}, group)
      out[#out + 1] = S_PENDING
    end
  end
end

call_chunked('ZREM', K_ACTIVE, done)
flush()
return out
