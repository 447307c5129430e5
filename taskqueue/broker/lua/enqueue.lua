-- Submit a batch of tasks in one atomic step.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  idempotency window (ms)
-- ARGV[3]  maximum pending tasks per type (0: unlimited)
-- ARGV[4..6] the broker's default priority, max_retries and timeout_ms
-- ARGV[7..] 8 fields per task: id, type, priority, payload (JSON), max_retries, timeout_ms,
--           ready_ms (<= now: pending at once; later: scheduled), idempotency key ('' for none).
--           An empty priority, max_retries or timeout_ms takes the task type's default (the
--           type-defaults hash, written by the type's workers), else the broker's.
-- Returns: per task, {id, created (1) or found by its idempotency key (0), state, priority}.
-- Errors:  "QUEUEFULL <type> <depth> <limit>" when the batch would push a type over its limit;
--          nothing is written then.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_depth = tonumber(ARGV[3])
local BROKER_DEFAULTS = {ARGV[4], ARGV[5], ARGV[6]}
local FIRST, FIELDS = 7, 8

-- The defaults of each type, read once per script run: {priority, max_retries, timeout_ms}.
local type_defaults = {}
local function defaults_of(ttype)
  local d = type_defaults[ttype]
  if not d then
    d = {}
    local encoded = redis.call('HGET', K_TYPE_DEFAULTS, ttype)
    local parts = {}
    if encoded then
      for part in string.gmatch(encoded .. '|', '([^|]*)|') do
        parts[#parts + 1] = part
      end
    end
    for n = 1, 3 do
      local v = parts[n]
      d[n] = (v ~= nil and v ~= '') and v or BROKER_DEFAULTS[n]
    end
    type_defaults[ttype] = d
  end
  return d
end

if max_depth > 0 then
  -- A submission whose idempotency key names an existing task (or an earlier one of this
  -- batch) adds nothing, so a client retrying a submit gets its task back even when full.
  local adding = {}
  local keyed = {}
  for i = FIRST, #ARGV, FIELDS do
    local ttype, idem = ARGV[i + 1], ARGV[i + 7]
    local known = false
    if idem ~= '' then
      if keyed[idem] then
        known = true
      else
        keyed[idem] = true
        local existing = redis.call('GET', key_idempotency(idem))
        known = existing and redis.call('EXISTS', key_task(existing)) == 1
      end
    end
    if not known then
      adding[ttype] = (adding[ttype] or 0) + 1
    end
  end
  for ttype, n in pairs(adding) do
    local depth = 0
    for _, priority in ipairs(PRIORITIES) do
      depth = depth + (tonumber(redis.call('HGET', K_COUNTS, S_PENDING .. '|' .. priority .. '|' .. ttype)) or 0)
    end
    if depth + n > max_depth then
      return redis.error_reply('QUEUEFULL ' .. ttype .. ' ' .. depth .. ' ' .. max_depth)
    end
  end
end

local result = {}
local seen_types = {}
for i = FIRST, #ARGV, FIELDS do
  local id, ttype, priority, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local max_retries, timeout_ms, ready_ms, idem = ARGV[i + 4], ARGV[i + 5], tonumber(ARGV[i + 6]), ARGV[i + 7]
  if priority == '' or max_retries == '' or timeout_ms == '' then
    local d = defaults_of(ttype)
    if priority == '' then priority = d[1] end
    if max_retries == '' then max_retries = d[2] end
    if timeout_ms == '' then timeout_ms = d[3] end
  end
  local existing = nil
  if idem ~= '' then
    local ikey = key_idempotency(idem)
    existing = redis.call('GET', ikey)
    if existing and redis.call('EXISTS', key_task(existing)) == 0 then
      existing = nil
    end
    if not existing then
      redis.call('SET', ikey, id, 'PX', window)
    end
  end
  if existing then
    local known = redis.call('HMGET', key_task(existing), 'state', 'priority')
    result[#result + 1] = {existing, 0, known[1], known[2]}
  else
    local fields = {
      'id', id, 'type', ttype, 'priority', priority, 'payload', payload, 'attempt', 0,
      'max_retries', max_retries, 'timeout_ms', timeout_ms, 'created_ms', now,
      'idempotency_key', idem}
    count('total|submitted', 1)
    seen_types[ttype] = true
    if ready_ms > now then
      make_scheduled(id, priority, ttype, ready_ms, fields)
      result[#result + 1] = {id, 1, S_SCHEDULED, priority}
    else
      make_ready(id, priority, ttype, now, false, fields)
      result[#result + 1] = {id, 1, S_PENDING, priority}
    end
  end
end
local types = {}
for ttype in pairs(seen_types) do
  types[#types + 1] = ttype
end
if #types > 0 then
  redis.call('SADD', K_TYPES, unpack(types))
end
flush()
return result
