-- Record firings: for each schedule still due at the run it was read at (a compare-and-set
-- on its next run, so of several schedulers racing for one tick exactly one records it), move
-- it to its next run and note what was submitted.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2 ...]  per schedule, 7 values: name, the next run read (ms), the new next run (ms),
--          the tick fired for (ms, '' if none), the task id ('' if none), ticks passed over
--          without a task, and why nothing was submitted ('' if it was)
-- Returns: {1 or 0 per schedule: whether this call recorded its firing}
local now = ARGV[1]
local won = {}
for i = 2, #ARGV, 7 do
  local name = ARGV[i]
  local current = redis.call('ZSCORE', K_SCHEDULE_DUE, name)
  if current and tonumber(current) == tonumber(ARGV[i + 1]) then
    local state = key_schedule(name)
    redis.call('ZADD', K_SCHEDULE_DUE, ARGV[i + 2], name)
    redis.call('HSET', state, 'last_run', now)
    if ARGV[i + 3] ~= '' then
      redis.call('HSET', state, 'last_tick', ARGV[i + 3])
    end
    if ARGV[i + 4] ~= '' then
      redis.call('HSET', state, 'last_task', ARGV[i + 4])
      redis.call('HINCRBY', state, 'fired', 1)
    end
    if tonumber(ARGV[i + 5]) > 0 then
      redis.call('HINCRBY', state, 'skipped', ARGV[i + 5])
    end
    if ARGV[i + 6] ~= '' then
      redis.call('HSET', state, 'last_error', ARGV[i + 6])
    else
      redis.call('HDEL', state, 'last_error')
    end
    won[#won + 1] = 1
  else
    won[#won + 1] = 0
  end
end
return won
