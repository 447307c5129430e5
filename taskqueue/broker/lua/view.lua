-- Read tasks for a response, each large field left in Redis: a page of tasks with big payloads
-- or results costs what the response carries, not what the tasks hold (HSTRLEN reads a
-- field's size without its value).
-- KEYS[1]  namespace prefix
-- ARGV[1]  limit: a field of more bytes than this is cut
-- ARGV[2]  n, how many of the field names that follow hold JSON (cut to nothing); the rest
--          hold text (cut to their first whole characters within the limit)
-- ARGV[3]  how many field names follow
-- ARGV[4..] the field names, then the task ids
-- Returns: per task id, {} when there is no such task, else {fields, cuts}: fields the flat
-- field/value pairs of its hash (cut ones left out or shortened), cuts the flat pairs of each
-- cut field's name and full size in bytes.
local limit = tonumber(ARGV[1])
local json_fields = tonumber(ARGV[2])
local first_field = 4
local first_id = first_field + tonumber(ARGV[3])
local names = {}
for j = first_field, first_id - 1 do
  names[#names + 1] = ARGV[j]
end

local out = {}
for i = first_id, #ARGV do
  out[#out + 1] = view_task(ARGV[i], limit, json_fields, names)
end
return out
