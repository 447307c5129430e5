-- Move scheduled tasks whose time has come (delayed starts, retry backoffs) to their queues.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  limit: at most this many per call
-- Returns: {number promoted, ready time of the next scheduled task (ms) or -1 if none}
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  local f = redis.call('HMGET', key_task(id), 'priority', 'type')
  count_state(S_SCHEDULED, f[1], f[2], -1)
  make_ready(id, f[1], f[2], now, false, {})
end
if #due > 0 then
  redis.call('ZREM', K_SCHEDULED, unpack(due))
end
flush()
local nxt = redis.call('ZRANGE', K_SCHEDULED, 0, 0, 'WITHSCORES')
return {#due, nxt[2] and tonumber(nxt[2]) or -1}
