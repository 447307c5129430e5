-- Delete a schedule: its definition, its state and its place in the due set. The tasks it
-- submitted are left alone.
-- KEYS[1]  namespace prefix
-- ARGV[1]  name
-- Returns: 1, or 0 if there was no such schedule.
local name = ARGV[1]
redis.call('ZREM', K_SCHEDULE_DUE, name)
redis.call('DEL', key_schedule(name))
return redis.call('HDEL', K_SCHEDULES, name)
