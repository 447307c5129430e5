-- Delete dead-lettered tasks for good.
-- KEYS[1]  namespace prefix
-- ARGV[1..] task ids
-- Returns: how many were deleted (ids not in the dead-letter queue are left alone).
local n = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local key = key_task(id)
  local f = redis.call('HMGET', key, 'state', 'priority', 'type')
  if f[1] == S_DEAD then
    redis.call('ZREM', K_DEAD, id)
    redis.call('DEL', key)
    count_state(S_DEAD, f[2], f[3], -1)
    n = n + 1
  end
end
count('total|purged', n)
flush()
return n
