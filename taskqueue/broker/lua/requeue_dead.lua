-- Put dead-lettered tasks back in their queues with a fresh set of attempts and snoozes and no
-- deadline (the operator's requeue says it is to run now), a unique one taking its unique key
-- back if no other task holds it.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2..] task ids
-- Returns: per id, 1 if requeued, 0 if it was not in the dead-letter queue.
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local key = key_task(id)
  local f = redis.call('HMGET', key, 'state', 'priority', 'type', 'unique_key', 'group')
  if f[1] == S_DEAD then
    if f[4] then  -- live again: unique again, unless a task of its kind holds the key by now
      redis.call('SET', key_unique(f[4]), id, 'NX')
    end
    redis.call('ZREM', K_DEAD, id)
    count_state(S_DEAD, f[2], f[3], -1)
    redis.call('HDEL', key, 'finished_ms', 'started_ms', 'worker_id', 'expires_ms')
    count('total|requeued', 1)
    make_ready(id, f[2], f[3], now, false, {'attempt', 0, 'cancel_requested', 0, 'snoozes', 0}, f[5])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
return out
