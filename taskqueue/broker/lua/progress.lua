-- Record a running task's progress, if the reporting attempt still holds the lease.
-- KEYS[1]  namespace prefix
-- ARGV[1]  task id
-- ARGV[2]  attempt
-- ARGV[3]  progress (JSON)
-- Returns: 1 if recorded, 0 if the attempt is stale.
local key = key_task(ARGV[1])
local f = redis.call('HMGET', key, 'state', 'attempt', 'type')
if f[1] ~= S_ACTIVE or f[2] ~= ARGV[2] then
  return 0
end
redis.call('HSET', key, 'progress', ARGV[3])
redis.call('PUBLISH', K_EVENTS_CHANNEL, cjson.encode({{ARGV[1], f[3], 'progress'}}))
return 1
