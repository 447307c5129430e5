-- Write settings of one policy layer (see taskqueue/broker/policy.py) in one atomic step, and
-- fold the limits of each task type it touches, live over config, into K_LIMITS: the one hash
-- claim.lua reads, "count interval_ms burst concurrency" per limited type (0: no such limit).
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
  if rate or concurrency ~= '0' then
    local count, interval = '0', '0'
    if rate then
      count, interval = string.match(rate, '^(%d+)/(%d+)$')
    end
    redis.call('HSET', K_LIMITS, ttype, count .. ' ' .. interval .. ' ' .. burst .. ' ' .. concurrency)
    if not rate then
      redis.call('HDEL', K_RATE, ttype)  -- a rate set again later starts afresh
    end
  else
    redis.call('HDEL', K_LIMITS, ttype)
    redis.call('HDEL', K_RATE, ttype)
    redis.call('HDEL', K_HELD, ttype)
  end
end
return (#sets / 2) + #dels
