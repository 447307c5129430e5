-- Return the tasks whose lease expired (their worker died or hung) and forget dead workers.
-- An expired lease is a failed attempt: the task is retried with backoff, or dead-lettered when
-- it has no retries left (expired, when the retry would start after its deadline); if its
-- cancellation had been requested, it is cancelled instead.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  worker registration TTL (ms): workers silent longer than this are removed
-- ARGV[3]  retry base delay (ms)
-- ARGV[4]  retry maximum delay (ms)
-- ARGV[5..] jitter values in [0, 1), one per task that may be reaped (also the batch limit)
-- Returns: {number of leases expired, ids of the workers removed, and per task that was still
--          active, 4 fields: id, type, priority, its new state}
local now = tonumber(ARGV[1])
local worker_ttl, base_ms, max_ms = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local limit = #ARGV - 4

local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now, 'LIMIT', 0, limit)
local outcomes = {}
for n, id in ipairs(expired) do
  local key = key_task(id)
  local f = redis.call('HMGET', key, 'state', 'attempt', 'priority', 'type', 'max_retries', 'worker_id', 'cancel_requested', 'expires_ms', 'group')
  redis.call('ZREM', K_ACTIVE, id)
  count('total|reaped', 1)
  if f[1] == S_ACTIVE then
    local priority, ttype = f[3], f[4]
    leave_active(priority, ttype, f[9])
    local state = S_CANCELLED
    if f[7] == '1' then
      make_final(id, priority, ttype, S_CANCELLED, now,
        {'error', 'cancelled at request; its worker stopped before confirming'})
    else
      local err = 'lease expired: worker ' .. (f[6] or '?') .. ' stopped sending heartbeats'
      state = fail_attempt(id, priority, ttype, tonumber(f[2]), tonumber(f[5]), now, err, '',
        tonumber(ARGV[4 + n]), base_ms, max_ms, f[8], f[9])
    end
    for _, v in ipairs({id, ttype, priority, state}) do
      outcomes[#outcomes + 1] = v
    end
  end
end

local gone = redis.call('ZRANGEBYSCORE', K_WORKERS, '-inf', now - worker_ttl)
for _, worker in ipairs(gone) do
  redis.call('DEL', key_worker(worker))
  forget_handoffs(worker)
end
if #gone > 0 then
  redis.call('ZREM', K_WORKERS, unpack(gone))
  count('total|workers_removed', #gone)
end
flush()
return {#expired, gone, outcomes}
