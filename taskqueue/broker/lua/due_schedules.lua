-- The schedules whose next run has come, with their definitions, for a scheduler to fire.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  limit: at most this many
-- Returns: {next run of the first schedule not yet due (ms) or -1, then name, next run (ms),
-- definition (JSON) for each due one}
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', K_SCHEDULE_DUE, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
local later = redis.call('ZRANGEBYSCORE', K_SCHEDULE_DUE, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local reply = {later[2] and tonumber(later[2]) or -1}
for i = 1, #due, 2 do
  reply[#reply + 1] = due[i]
  reply[#reply + 1] = tonumber(due[i + 1])
  reply[#reply + 1] = redis.call('HGET', K_SCHEDULES, due[i]) or ''
end
return reply
