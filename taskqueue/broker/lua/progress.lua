-- Record the progress of running tasks, each only if the reporting attempt still holds its lease.
-- KEYS[1]  namespace prefix
-- ARGV[1..] 3 fields per update: task id, attempt, progress (JSON)
-- Returns: per update, 1 if recorded, 0 if the attempt is stale.
local out = {}
local events = {}
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  local key = key_task(id)
  local f = redis.call('HMGET', key, 'state', 'attempt', 'type')
  if f[1] == S_ACTIVE and f[2] == ARGV[i + 1] then
    redis.call('HSET', key, 'progress', ARGV[i + 2])
    events[#events + 1] = {id, f[3], 'progress'}
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #events > 0 then
  redis.call('PUBLISH', K_EVENTS_CHANNEL, cjson.encode(events))
end
return out
