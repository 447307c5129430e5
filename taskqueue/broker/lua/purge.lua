-- Delete finished tasks of one state for good (succeeded, cancelled, expired or dead): what
-- `taskqueue purge` and the dead-letter queue's purge do. A dead letter leaves the
-- dead-letter counts (flush() then drops a type left with no task from the types set) and is
-- counted under total|purged; the other states are counted by their sets' ZCARD.
-- KEYS[1]  namespace prefix
-- ARGV[1]  the state: succeeded, cancelled, expired or dead
-- ARGV[2..] task ids
-- Returns: how many were deleted. Ids of tasks in another state are left alone; an id in the
--          state's set whose record is gone is dropped from the set (not counted).
local state = ARGV[1]
local zset = STATE_ZSET[state]
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local key = key_task(id)
  local f = redis.call('HMGET', key, 'state', 'priority', 'type')
  if f[1] == state then
    redis.call('ZREM', zset, id)
    redis.call('DEL', key)
    if state == S_DEAD then
      count_state(S_DEAD, f[2], f[3], -1)
    end
    n = n + 1
  elseif not f[1] then
    redis.call('ZREM', zset, id)
  end
end
if state == S_DEAD then
  count('total|purged', n)
end
flush()
return n
