-- Cancel the waiting tasks of one type in bounded steps: at most ARGV[4] per call, so a bulk
-- cancel of a million tasks never holds Redis for long. Each is cancelled as cancel.lua
-- cancels one (the same take_out, make_final, error text, counters and events); an active
-- task is flagged and its worker told, as cancel.lua does.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  task type
-- ARGV[3]  the state to work on: blocked, pending, scheduled or active
-- ARGV[4]  at most this many tasks cancelled (or, active, flagged: again if they were) by
--          this call
-- ARGV[5]  blocked, scheduled, active: where in the state's sorted set to go on scanning (the previous
--          call's answer; 0 at first)
-- ARGV[6]  scheduled, active: at most this many members scanned by this call (the set holds
--          every type's tasks)
-- Returns: {n, next, priority, count, priority, count, ...}: n tasks cancelled (active:
--          flagged), next the ARGV[5] of the next call or -1 when none is left to look at,
--          then how many were cancelled per priority.
local now, ttype, state = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local budget, offset, scan = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local by_priority = {}
local n = 0

local function cancel_one(id, priority, group)
  take_out(id, state, priority, ttype, group)
  make_final(id, priority, ttype, S_CANCELLED, now, {'error', 'cancelled before it ran'})
  by_priority[priority] = (by_priority[priority] or 0) + 1
  n = n + 1
end

local next_offset = -1
if state == S_PENDING then
  -- Each list is taken from its head, where take_out's LREM finds the id at once. A grouped
  -- type's tasks wait in its groups' lists (and, without a group, in K_READY as the ring's
  -- member ''); every member of a ring has a task, so `budget` members are enough.
  local grouped = is_grouped(ttype)
  for _, priority in ipairs(PRIORITIES) do
    local members = {false}
    if grouped then
      members = redis.call('ZRANGE', key_ring(priority, ttype), 0, budget - 1)
    end
    for _, member in ipairs(members) do
      local group = member ~= '' and member or false
      local queue = queue_of(priority, ttype, group)
      if n < budget then
        for _, id in ipairs(redis.call('LRANGE', queue, 0, budget - n - 1)) do
          local f = redis.call('HMGET', key_task(id), 'state', 'type')
          if f[1] == S_PENDING and f[2] == ttype then
            cancel_one(id, priority, group)
          end
        end
      end
      if next_offset < 0 and redis.call('LLEN', queue) > 0 then
        next_offset = 0
      end
    end
    if grouped and next_offset < 0 and redis.call('EXISTS', key_ring(priority, ttype)) == 1 then
      next_offset = 0
    end
  end
else
  local zset = STATE_ZSET[state]
  local ids = redis.call('ZRANGE', zset, offset, offset + scan - 1)
  for _, id in ipairs(ids) do
    if n >= budget then
      break
    end
    local key = key_task(id)
    local f = redis.call('HMGET', key, 'state', 'type', 'priority', 'worker_id')
    if f[1] == state and f[2] == ttype then
      if state == S_ACTIVE then
        redis.call('HSET', key, 'cancel_requested', 1)
        redis.call('PUBLISH', K_CANCEL_CHANNEL, (f[4] or '') .. ' ' .. id)
        n = n + 1
        offset = offset + 1  -- a flagged task stays active: step over it
      else
        cancel_one(id, f[3])
      end
    else
      offset = offset + 1
    end
  end
  if #ids > 0 then
    next_offset = offset
  end
end
flush()
local out = {n, next_offset}
for priority, count_ in pairs(by_priority) do
  out[#out + 1] = priority
  out[#out + 1] = count_
end
return out
