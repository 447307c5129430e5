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

-- The first bytes of `text`, at most `n`, without a character split at the end.
local function utf8_prefix(text, n)
  local prefix = string.sub(text, 1, n)
  local last = #prefix
  local at = last
  while at > 0 and at > last - 3 do
    local byte = string.byte(prefix, at)
    if byte < 0x80 then
      return prefix
    end
    if byte >= 0xC0 then  -- a lead byte: its character takes 2, 3 or 4 bytes
      local length = byte >= 0xF0 and 4 or (byte >= 0xE0 and 3 or 2)
      if last - at + 1 < length then
        return string.sub(prefix, 1, at - 1)
      end
      return prefix
    end
    at = at - 1
  end
  return prefix
end

local out = {}
for i = first_id, #ARGV do
  local key = key_task(ARGV[i])
  local cuts = {}
  local cut = {}
  for j = first_field, first_id - 1 do
    local name = ARGV[j]
    local size = redis.call('HSTRLEN', key, name)
    if size > limit then
      cuts[#cuts + 1] = name
      cuts[#cuts + 1] = size
      cut[name] = j - first_field < json_fields and 'json' or 'text'
    end
  end
  local fields
  if #cuts == 0 then
    fields = redis.call('HGETALL', key)
  else
    local kept = {}
    for _, name in ipairs(redis.call('HKEYS', key)) do
      if not cut[name] then
        kept[#kept + 1] = name
      end
    end
    fields = {}
    if #kept > 0 then
      local values = redis.call('HMGET', key, unpack(kept))
      for j, name in ipairs(kept) do
        fields[#fields + 1] = name
        fields[#fields + 1] = values[j]
      end
    end
    for name, kind in pairs(cut) do
      if kind == 'text' then
        fields[#fields + 1] = name
        fields[#fields + 1] = utf8_prefix(redis.call('HGET', key, name), limit)
      end
    end
  end
  if #fields == 0 then
    out[#out + 1] = {}
  else
    out[#out + 1] = {fields, cuts}
  end
end
return out
