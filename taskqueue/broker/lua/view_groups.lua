-- Read the groups of every grouped task type for stats: how many groups have pending tasks and
-- how many active ones, and the `top` groups by backlog with both of their counts. Reads only
-- the counters the scripts keep (see _lib.lua: groups), so its cost grows with log(groups).
-- KEYS[1]  namespace prefix
-- ARGV[1]  top: how many groups to name per type
-- Returns: per grouped type {type, groups with pending tasks, groups with active tasks,
--          then 3 fields per named group: group, pending, active}
local top = tonumber(ARGV[1])
local out = {}
for _, ttype in ipairs(redis.call('HKEYS', K_GROUPED)) do
  local pending_key, active_key = key_group_pending(ttype), key_group_active(ttype)
  local entry = {ttype, redis.call('ZCARD', pending_key), redis.call('ZCARD', active_key)}
  if top > 0 then
    local named = redis.call('ZRANGE', pending_key, '+inf', 1, 'BYSCORE', 'REV', 'LIMIT', 0, top, 'WITHSCORES')
    if #named < 2 * top then
      -- Fewer groups wait than asked for: name the busiest of the rest by their active tasks.
      local busy = redis.call('ZRANGE', active_key, '+inf', 1, 'BYSCORE', 'REV', 'LIMIT', 0, top, 'WITHSCORES')
      local seen = {}
      for i = 1, #named, 2 do
        seen[named[i]] = true
      end
      for i = 1, #busy, 2 do
        if #named >= 2 * top then
          break
        end
        if not seen[busy[i]] then
          named[#named + 1], named[#named + 2] = busy[i], '0'
        end
      end
    end
    for i = 1, #named, 2 do
      local group = named[i]
      entry[#entry + 1] = group
      entry[#entry + 1] = tonumber(named[i + 1])
      entry[#entry + 1] = tonumber(redis.call('ZSCORE', active_key, group) or 0)
    end
  end
  out[#out + 1] = entry
end
return out
