-- Expire at once the leases of workers known to be dead (their process is gone), so that the
-- next reap returns their tasks instead of waiting out the worker timeout; forget the workers
-- (counted under total|workers_removed, as the reaper counts the silent ones it removes).
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2..] ids of the dead workers
-- Returns: the number of leases expired.
local now = tonumber(ARGV[1])
local dead = {}
for i = 2, #ARGV do
  dead[ARGV[i]] = true
  redis.call('DEL', key_worker(ARGV[i]))
  forget_handoffs(ARGV[i])
  count('total|workers_removed', redis.call('ZREM', K_WORKERS, ARGV[i]))
end
local leases = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_ACTIVE, now, '+inf')) do
  if dead[redis.call('HGET', key_task(id), 'worker_id')] then
    leases[#leases + 1] = now - 1
    leases[#leases + 1] = id
  end
end
call_chunked('ZADD', K_ACTIVE, leases)
flush()
return #leases / 2
