-- Lease up to `count` pending tasks of the given types to one worker.
-- Strict priority order (critical first), FIFO within a priority and type; the types are
-- visited in the order given, which the worker rotates between claims for fairness.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  worker id
-- ARGV[3]  lease deadline (ms); the heartbeat extends it while the worker lives
-- ARGV[4]  count: how many tasks at most
-- ARGV[5]  guard: 1 to first take one task from each priority below the highest non-empty
--          one (the starvation guard), 0 for strictly by priority
-- ARGV[6..] task types the worker can run
-- Returns: 8 fields per claimed task: id, type, priority, payload, attempt, max_retries,
--          timeout_ms, ready_ms.
local now, worker, deadline = ARGV[1], ARGV[2], tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local guard = ARGV[5] == '1'
local out = {}
local leases = {}
local claimed = 0

local function take(priority, ttype, n)
  local ids = redis.call('LPOP', key_ready(priority, ttype), n)
  if not ids then
    return 0
  end
  for _, id in ipairs(ids) do
    local key = key_task(id)
    local f = redis.call('HMGET', key, 'payload', 'attempt', 'max_retries', 'timeout_ms', 'ready_ms')
    local attempt = tonumber(f[2]) + 1
    redis.call('HSET', key, 'state', S_ACTIVE, 'attempt', attempt, 'worker_id', worker, 'started_ms', now)
    leases[#leases + 1] = deadline
    leases[#leases + 1] = id
    local o = #out
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, ttype, priority, f[1]
    out[o + 5], out[o + 6], out[o + 7], out[o + 8] = attempt, f[3], f[4], f[5]
    event(id, ttype, S_ACTIVE)
  end
  count_state(S_PENDING, priority, ttype, -#ids)
  count_state(S_ACTIVE, priority, ttype, #ids)
  claimed = claimed + #ids
  return #ids
end

if guard then
  local seen_higher = false
  for _, priority in ipairs(PRIORITIES) do
    for i = 6, #ARGV do
      if claimed >= wanted then break end
      if seen_higher then
        if take(priority, ARGV[i], 1) > 0 then break end
      elseif redis.call('LLEN', key_ready(priority, ARGV[i])) > 0 then
        seen_higher = true
        break
      end
    end
  end
end

for _, priority in ipairs(PRIORITIES) do
  for i = 6, #ARGV do
    if claimed >= wanted then break end
    take(priority, ARGV[i], wanted - claimed)
  end
end

call_chunked('ZADD', K_ACTIVE, leases)
flush()
return out
