-- Write settings of one policy layer (see taskqueue/broker/policy.py) in one atomic step, and
-- fold the limits of each task type it touches, live over config, into K_LIMITS: the one hash
-- claim.lua reads, "count interval_ms burst concurrency paused" per limited type (0: no such
-- limit; paused 1 or 0). The workers are woken for those types: a limit lifted frees tasks.
-- KEYS[1]  namespace prefix
-- ARGV[1]  the layer: 'live' or 'config'
-- ARGV[2..] field, value pairs; an empty value deletes the field
-- Returns: the number of fields written or deleted
local key = ARGV[1] == 'live' and K_POLICY_LIVE or K_POLICY_CONFIG
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
  if rate or concurrency ~= '0' or paused == '1' then
    local count, interval = '0', '0'
    if rate then
      count, interval = string.match(rate, '^(%d+)/(%d+)$')
    end
    redis.call('HSET', K_LIMITS, ttype, table.concat({count, interval, burst, concurrency, paused}, ' '))
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
