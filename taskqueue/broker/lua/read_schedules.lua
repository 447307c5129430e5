-- Schedules with their state and their last task's state, read at one instant.
-- KEYS[1]  namespace prefix
-- ARGV     names
-- Returns: per name, {definition (JSON) or '' if there is none, next run (ms) or -1 when
-- paused, the state hash (flat), the last task's state or ''}
local reply = {}
for i, name in ipairs(ARGV) do
  local spec = redis.call('HGET', K_SCHEDULES, name)
  if not spec then
    reply[i] = {''}
  else
    local state = redis.call('HGETALL', key_schedule(name))
    local next_run = redis.call('ZSCORE', K_SCHEDULE_DUE, name)
    local last = redis.call('HGET', key_schedule(name), 'last_task')
    local last_state = last and redis.call('HGET', key_task(last), 'state') or ''
    reply[i] = {spec, next_run and tonumber(next_run) or -1, state, last_state or ''}
  end
end
return reply
