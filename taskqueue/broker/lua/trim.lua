-- Delete finished records past their retention: by age, then the oldest beyond the count.
-- Each finished state (succeeded, cancelled, expired, dead) has its own age and count limit; a
-- dropped dead letter leaves the dead-letter counts and is counted under total|dead_dropped.
-- Also drops from the types set up to ARGV[9] sampled types that have no task left: flush()
-- keeps the set exact as tasks move, and this sweeps what an older version left there.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  limit: how many records at most this call deletes, over all states
-- ARGV[3..10] per state succeeded, cancelled, expired, dead: the age (ms) and the count kept,
--             0 = no limit
-- ARGV[11] how many members of the types set to sample for the sweep
-- Returns: {succeeded deleted, cancelled deleted, expired deleted, dead deleted, types dropped}
local now, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed = {}

local function doomed(zset, age_ms, keep)
  local ids = {}
  if budget <= 0 then
    return ids
  end
  if age_ms > 0 then
    ids = redis.call('ZRANGEBYSCORE', zset, '-inf', now - age_ms, 'LIMIT', 0, budget)
  end
  if keep > 0 and #ids < budget then
    local over = redis.call('ZCARD', zset) - #ids - keep
    if over > 0 then
      -- The oldest past the count, after those already chosen by age (they are the oldest).
      local more = redis.call('ZRANGE', zset, #ids, #ids + math.min(over, budget - #ids) - 1)
      for _, id in ipairs(more) do
        ids[#ids + 1] = id
      end
    end
  end
  budget = budget - #ids
  return ids
end

for n, zset in ipairs({K_SUCCEEDED, K_CANCELLED, K_EXPIRED, K_DEAD}) do
  local ids = doomed(zset, tonumber(ARGV[1 + 2 * n]), tonumber(ARGV[2 + 2 * n]))
  if #ids > 0 then
    if zset == K_DEAD then
      for _, id in ipairs(ids) do
        local f = redis.call('HMGET', key_task(id), 'priority', 'type')
        if f[1] then
          count_state(S_DEAD, f[1], f[2], -1)
        end
      end
      count('total|dead_dropped', #ids)
    end
    for _, id in ipairs(ids) do
      redis.call('DEL', key_task(id))
    end
    call_chunked('ZREM', zset, ids)
  end
  removed[n] = #ids
end
flush()
local swept = 0
for _, ttype in ipairs(redis.call('SRANDMEMBER', K_TYPES, tonumber(ARGV[11]))) do
  if not type_has_tasks(ttype) then
    swept = swept + redis.call('SREM', K_TYPES, ttype)
  end
end
removed[5] = swept
return removed
