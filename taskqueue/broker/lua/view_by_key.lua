-- Read the task an idempotency key maps to, as view.lua reads a task: the key and the task in
-- one step, so a key whose task expired is not mistaken for a live one (enqueue.lua's rule).
-- KEYS[1]  namespace prefix
-- ARGV[1]  limit: a field of more bytes than this is cut
-- ARGV[2]  n, how many of the field names that follow hold JSON (cut to nothing); the rest
--          hold text (cut to their first whole characters within the limit)
-- ARGV[3]  how many field names follow
-- ARGV[4..] the field names, then the idempotency key
-- Returns: {} when the key maps to no live task, else {fields, cuts} as view.lua returns them.
local first_field = 4
local key_at = first_field + tonumber(ARGV[3])
local id = redis.call('GET', key_idempotency(ARGV[key_at]))
if not id or redis.call('EXISTS', key_task(id)) == 0 then
  return {}
end
local names = {}
for j = first_field, key_at - 1 do
  names[#names + 1] = ARGV[j]
end
return view_task(id, tonumber(ARGV[1]), tonumber(ARGV[2]), names)
