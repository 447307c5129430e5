-- Refresh a worker's registration and extend the leases of the tasks it is running.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  worker id
-- ARGV[3]  registration TTL (ms): the worker counts as dead this long after its last beat
-- ARGV[4]  new lease deadline (ms)
-- ARGV[5]  the worker's registration as JSON
-- ARGV[6]  the task types it serves, comma-separated: each is marked served until this
--          registration expires (the served hash, which enqueue.lua checks submissions against)
-- ARGV[7..] 2 fields per running task: id, attempt
-- Returns: {ids whose lease this worker no longer holds, ids whose cancellation was requested}
local now, worker, ttl, deadline = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local wkey = key_worker(worker)
redis.call('HSET', wkey, 'info', ARGV[5], 'last_heartbeat_ms', now)
redis.call('PEXPIRE', wkey, ttl)
redis.call('ZADD', K_WORKERS, now, worker)
if ARGV[6] ~= '' then
  local until_ms = tonumber(now) + ttl
  local types = {}
  for ttype in string.gmatch(ARGV[6], '[^,]+') do
    types[#types + 1] = ttype
  end
  -- Another worker's registration may last longer (a longer worker_timeout): keep the later.
  local known = redis.call('HMGET', K_SERVED, unpack(types))
  local served = {}
  for n, ttype in ipairs(types) do
    if not known[n] or tonumber(known[n]) < until_ms then
      served[#served + 1] = ttype
      served[#served + 1] = until_ms
    end
  end
  if #served > 0 then
    redis.call('HSET', K_SERVED, unpack(served))
  end
end

local lost, cancel, leases = {}, {}, {}
for i = 7, #ARGV, 2 do
  local id, attempt = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', key_task(id), 'state', 'attempt', 'worker_id', 'cancel_requested')
  if f[1] == S_ACTIVE and f[2] == attempt and f[3] == worker then
    leases[#leases + 1] = deadline
    leases[#leases + 1] = id
    if f[4] == '1' then
      cancel[#cancel + 1] = id
    end
  else
    lost[#lost + 1] = id
  end
end
for i = 1, #leases, 1000 do
  redis.call('ZADD', K_ACTIVE, 'XX', unpack(leases, i, math.min(i + 999, #leases)))
end
return {lost, cancel}
