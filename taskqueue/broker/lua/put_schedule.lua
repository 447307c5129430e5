-- Create or replace a schedule's definition, keeping its state (last run, counts, paused).
-- KEYS[1]  namespace prefix
-- ARGV[1]  name
-- ARGV[2]  the definition (JSON, encoded the same way every time: see schedules/model.py)
-- ARGV[3]  its next tick from now (ms), computed by the caller from the definition
-- ARGV[4]  now (ms)
-- ARGV[5]  the most schedules the namespace may hold
-- ARGV[6]  '1': create only (refuse if the name exists); '0': create or replace
-- Returns: 'created', 'replaced', 'unchanged' (same definition: its next run is left as it
-- is, so daemons restarting with the same [[schedules]] do not move a tick), 'exists' or
-- 'full'.
local name, spec, next_run, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local state = key_schedule(name)
local old = redis.call('HGET', K_SCHEDULES, name)
if old then
  if ARGV[6] == '1' then
    return 'exists'
  end
  if old == spec then
    return 'unchanged'
  end
elseif redis.call('HLEN', K_SCHEDULES) >= tonumber(ARGV[5]) then
  return 'full'
end
redis.call('HSET', K_SCHEDULES, name, spec)
if old then
  redis.call('HSET', state, 'updated', now)
else
  redis.call('DEL', state)
  redis.call('HSET', state, 'created', now, 'updated', now, 'fired', 0, 'skipped', 0)
end
if redis.call('HGET', state, 'paused') ~= '1' then
  redis.call('ZADD', K_SCHEDULE_DUE, next_run, name)
end
return old and 'replaced' or 'created'
