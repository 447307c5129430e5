-- Write settings of one policy layer (see taskqueue/broker/policy.py) in one atomic step, and
-- fold the limits of each task type it touches, live over config, into K_LIMITS: the one hash
-- claim.lua reads, "count interval_ms burst concurrency paused group_concurrency group_count
-- group_interval_ms" per limited type (0: no such limit; paused 1 or 0). The workers are woken
-- for those types: a limit lifted frees tasks. A type whose group concurrency changes, or whose
-- group rate limit goes (letting its resting groups back), has its rings refolded: each group
-- with pending tasks is in them exactly when it has room and does not rest (see _lib.lua:
-- groups), which reads every waiting group of the type once.
-- KEYS[1]  namespace prefix
-- ARGV[1]  the layer: 'live' or 'config'
-- ARGV[2..] field, value pairs; an empty value deletes the field
-- Returns: the number of fields written or deleted
local key = ARGV[1] == 'live' and K_POLICY_LIVE or K_POLICY_CONFIG

-- Put the groups of `ttype` with pending tasks in its rings, or take them out, by whether
-- `limit` (0: none) leaves them room to start one more and they do not rest.
local function refold_groups(ttype, limit)
  local active_key, resting_key = key_group_active(ttype), key_group_resting(ttype)
  for _, group in ipairs(redis.call('ZRANGE', key_group_pending(ttype), 0, -1)) do
    local room = limit == 0 or tonumber(redis.call('ZSCORE', active_key, group) or 0) < limit
    if room and not redis.call('ZSCORE', resting_key, group) then
      rejoin_rings(ttype, group)
    else
      park_group(ttype, group)
    end
  end
end
local sets, dels = {}, {}
local limited = {}
local is_limit = {}
for _, name in ipairs(LIMIT_NAMES) do
  is_limit[name] = true
end
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    dels[#dels + 1] = ARGV[i]
  else
    sets[#sets + 1] = ARGV[i]
    sets[#sets + 1] = ARGV[i + 1]
  end
  local name, ttype = string.match(ARGV[i], '^([^|]+)|(.+)$')
  if name and is_limit[name] then
    limited[ttype] = true
  end
end
if #dels > 0 then
  redis.call('HDEL', key, unpack(dels))
end
if #sets > 0 then
  redis.call('HSET', key, unpack(sets))
end

for ttype in pairs(limited) do
  local fields = {}
  for n, name in ipairs(LIMIT_NAMES) do
    fields[n] = name .. '|' .. ttype
  end
  local live = redis.call('HMGET', K_POLICY_LIVE, unpack(fields))
  local config = redis.call('HMGET', K_POLICY_CONFIG, unpack(fields))
  local rate = live[1] or config[1]
  local burst = live[2] or config[2] or '1'
  local concurrency = live[3] or config[3] or '0'
  local paused = live[4] or config[4] or '0'
  local per_group = live[5] or config[5] or '0'
  local group_rate = live[6] or config[6]
  local before = parse_limits(redis.call('HGET', K_LIMITS, ttype))
  local group_count, group_interval = '0', '0'
  if group_rate then
    group_count, group_interval = string.match(group_rate, '^(%d+)/(%d+)$')
  elseif before[7] > 0 then
    redis.call('DEL', key_group_resting(ttype))  -- the resting groups come back at once
  end
  if before[6] ~= tonumber(per_group) or (before[7] > 0 and not group_rate) then
    refold_groups(ttype, tonumber(per_group))
  end
  if rate or concurrency ~= '0' or paused == '1' or per_group ~= '0' or group_rate then
    local count, interval = '0', '0'
    if rate then
      count, interval = string.match(rate, '^(%d+)/(%d+)$')
    end
    local entry = {count, interval, burst, concurrency, paused, per_group, group_count, group_interval}
    redis.call('HSET', K_LIMITS, ttype, table.concat(entry, ' '))
    if not rate then
      redis.call('HDEL', K_RATE, ttype)  -- a rate set again later starts afresh
    end
  else
    redis.call('HDEL', K_LIMITS, ttype)
    redis.call('HDEL', K_RATE, ttype)
    redis.call('HDEL', K_HELD, ttype)
  end
end
local wake = {}
for ttype in pairs(limited) do
  wake[#wake + 1] = ttype
end
if #wake > 0 then
  redis.call('PUBLISH', K_WAKE_CHANNEL, table.concat(wake, ','))
end
return (#sets / 2) + #dels
