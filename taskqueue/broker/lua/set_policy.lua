-- Write settings of one policy layer (see taskqueue/broker/policy.py) in one atomic step.
-- KEYS[1]  namespace prefix
-- ARGV[1]  the layer: 'live' or 'config'
-- ARGV[2..] field, value pairs; an empty value deletes the field
-- Returns: the number of fields written or deleted
local key = ARGV[1] == 'live' and K_POLICY_LIVE or K_POLICY_CONFIG
local sets, dels = {}, {}
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    dels[#dels + 1] = ARGV[i]
  else
    sets[#sets + 1] = ARGV[i]
    sets[#sets + 1] = ARGV[i + 1]
  end
end
if #dels > 0 then
  redis.call('HDEL', key, unpack(dels))
end
if #sets > 0 then
  redis.call('HSET', key, unpack(sets))
end
return (#sets / 2) + #dels
