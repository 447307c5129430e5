-- Move scheduled tasks whose time has come (delayed starts, retry backoffs) to their queues,
-- after ending those whose deadline passed while they waited (blocked, pending or scheduled)
-- as expired. A task met here while active is only dropped from K_DEADLINES: its worker's
-- report or the reaper judges it (see would_expire in _lib.lua).
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  limit: at most this many promoted, and this many deadlines looked at, per call
-- Returns: {number promoted, when the next scheduled task or deadline is due (ms) or -1 if
--           none, the type and priority of each task ended expired (a flat list)}
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local expired = {}
local WAITING = {[S_BLOCKED] = true, [S_PENDING] = true, [S_SCHEDULED] = true}
local past = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(past) do
  local f = redis.call('HMGET', key_task(id), 'state', 'priority', 'type')
  if WAITING[f[1]] then
    expire(id, f[1], f[2], f[3], now)  -- make_final drops it from K_DEADLINES
    expired[#expired + 1] = f[3]
    expired[#expired + 1] = f[2]
  else
    redis.call('ZREM', K_DEADLINES, id)
  end
end

local due = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  local f = redis.call('HMGET', key_task(id), 'priority', 'type', 'group')
  count_state(S_SCHEDULED, f[1], f[2], -1)
  make_ready(id, f[1], f[2], now, false, {}, f[3])
end
if #due > 0 then
  redis.call('ZREM', K_SCHEDULED, unpack(due))
end
flush()
local next_due = -1
for _, zset in ipairs({K_SCHEDULED, K_DEADLINES}) do
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
end
if #past >= limit then
  next_due = now  -- more deadlines may have passed: come back at once
end
return {#due, next_due, expired}
