-- Pause a schedule (it leaves the due set and fires no more) or resume it.
-- KEYS[1]  namespace prefix
-- ARGV[1]  name
-- ARGV[2]  '1' pause, '0' resume
-- ARGV[3]  on resume: its next tick from now (ms)
-- ARGV[4]  now (ms)
-- Returns: 1, or 0 if there is no such schedule.
local name = ARGV[1]
if redis.call('HEXISTS', K_SCHEDULES, name) == 0 then
  return 0
end
local state = key_schedule(name)
if ARGV[2] == '1' then
  redis.call('ZREM', K_SCHEDULE_DUE, name)
  redis.call('HSET', state, 'paused', 1, 'updated', ARGV[4])
elseif redis.call('HGET', state, 'paused') == '1' then
  redis.call('HSET', state, 'paused', 0, 'updated', ARGV[4])
  redis.call('ZADD', K_SCHEDULE_DUE, ARGV[3], name)
end
return 1
