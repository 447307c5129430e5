-- Submit a batch of tasks in one atomic step, under the queue policy stored in Redis.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  strict: '1' refuses a type no live worker serves, whatever the policy says
-- ARGV[3]  the batch's types whose home is another partition of the namespace (comma-separated;
--          '' with one partition): a limited one of them is refused here (see below)
-- ARGV[4..11] the submitter's fallback policy, one value per POLICY_NAMES (max_queue_depth,
--           max_retries, timeout_ms, priority, idempotency_window_ms, refuse_unserved,
--           max_task_types, unique): used only where neither policy layer sets the setting
--           (see taskqueue/broker/policy.py)
-- ARGV[12..] 17 fields per task: id, type, priority, payload (JSON), max_retries, timeout_ms,
--           ready_ms (<= now: pending at once; later: scheduled), idempotency key ('' for none),
--           dependencies ('' for none, else "<cancel|run> <dep>,<dep>...", each dep a task id
--           or '#<index>' of an earlier task of the batch; the word says what a dead or
--           cancelled dependency does to the task), unique ('1', '0'), deadline (ms; '' for
--           none), headers (JSON; '' for none), debounce key ('' for none), its window (ms),
--           max wait (ms; '' for none), keep ('last' or 'first'), group ('' for none: see
--           _lib.lua for how groups take turns). An empty priority,
--           max_retries, timeout_ms or unique takes the type's policy.
-- A unique task holds K_UNIQUE(sha1 of its type and payload) until it ends (make_final lets
-- go): a unique submission of the same type and payload meanwhile returns it, as a matching
-- idempotency key does (created 0).
-- A debounced submission whose key (of its type) names a task still waiting for its first
-- start (scheduled, attempt 0) joins it:
-- that task's start moves to `window` after now (never past `max wait` after the submission
-- that created it), and with keep 'last' its payload and headers become this one's. Otherwise
-- it creates a scheduled task, a window from now, that its key names from then on.
-- A task with dependencies that have not all ended is stored blocked; the end of the last one
-- releases it (see _lib.lua). One that depends on a task already dead, cancelled or expired is
-- cancelled at once (unless it runs anyway); on tasks that all ended, it is queued with their
-- results. A task with a deadline is noted in K_DEADLINES until it ends.
-- Returns: {per task {id, created (1) or found by its idempotency key, as unique or by its
--           debounce key (0), state, priority, what its debounce did ('' for none; 'created',
--           'replaced', 'joined')},
--           the batch's types that no live worker serves (the served hash, kept by heartbeats)}
-- Errors:  "BADTYPE <index>" when task <index> (0-based) has a type name outside TYPE_RULE
--          (the Python submitters check first; this holds every other one to it too);
--          "QUEUEFULL <type> <depth> <limit>" when the batch would push a type over its limit;
--          "TOOMANYTYPES <type> <types> <limit>" when a type without tasks would make more
--          distinct types with tasks than the global max_task_types (0: no limit);
--          "UNSERVED <type>" when a type no live worker serves is refused;
--          "NODEPENDENCY <index> <id>" when task <index> depends on a task that does not exist;
--          "AWAY <type>" when a type of ARGV[3] has a rate, concurrency or depth limit: its
--          tasks live in its home partition, where the limit holds for the whole namespace;
--          nothing is written.
local now = tonumber(ARGV[1])
local strict = ARGV[2] == '1'
local FIRST, FIELDS = 4 + #POLICY_NAMES, 17
local DEPTH, RETRIES, TIMEOUT, PRIORITY, WINDOW, REFUSE, MAXTYPES, UNIQUE = 1, 2, 3, 4, 5, 6, 7, 8

for i = FIRST, #ARGV, FIELDS do
  if not valid_type(ARGV[i + 1]) then
    return redis.error_reply('BADTYPE ' .. ((i - FIRST) / FIELDS))
  end
  if ARGV[i + 8] ~= '' then
    local index = (i - FIRST) / FIELDS
    for dep in string.gmatch(string.match(ARGV[i + 8], ' (.*)$') or '', '[^,]+') do
      if string.sub(dep, 1, 1) == '#' then
        local earlier = tonumber(string.sub(dep, 2))
        if not earlier or earlier >= index then
          return redis.error_reply('NODEPENDENCY ' .. index .. ' ' .. dep)
        end
      elseif redis.call('EXISTS', key_task(dep)) == 0 then
        return redis.error_reply('NODEPENDENCY ' .. index .. ' ' .. dep)
      end
    end
  end
end

-- The global policy, then each type's, resolved once per script run: live, config, fallback.
local global = {}
do
  local live = redis.call('HMGET', K_POLICY_LIVE, unpack(POLICY_NAMES))
  local config = redis.call('HMGET', K_POLICY_CONFIG, unpack(POLICY_NAMES))
  for n = 1, #POLICY_NAMES do
    global[n] = live[n] or config[n] or ARGV[3 + n]
  end
end
local policies = {}
local unserved = {}
local function policy_of(ttype)
  local p = policies[ttype]
  if not p then
    local fields = {}
    for n, name in ipairs(POLICY_NAMES) do
      fields[n] = name .. '|' .. ttype
    end
    local live = redis.call('HMGET', K_POLICY_LIVE, unpack(fields))
    local config = redis.call('HMGET', K_POLICY_CONFIG, unpack(fields))
    p = {}
    for n = 1, #POLICY_NAMES do
      p[n] = live[n] or config[n] or global[n]
    end
    local until_ms = redis.call('HGET', K_SERVED, ttype)
    p.unserved = not until_ms or tonumber(until_ms) < now
    if p.unserved then
      unserved[#unserved + 1] = ttype
    end
    policies[ttype] = p
  end
  return p
end

-- A type with a limit keeps its tasks in one partition (its home), so that the limit holds for
-- the whole namespace: the submitter learns it from this refusal and places them there.
for ttype in string.gmatch(ARGV[3], '[^,]+') do
  local f = parse_limits(redis.call('HGET', K_LIMITS, ttype))
  if f[1] > 0 or f[4] > 0 or tonumber(policy_of(ttype)[DEPTH]) > 0 then
    return redis.error_reply('AWAY ' .. ttype)
  end
end

-- A submission whose idempotency key names an existing task (or an earlier one of this batch)
-- adds nothing, so a client retrying a submit gets its task back even when the queue is full.
-- Counting what a batch adds is needed only under a depth limit or a bound on types.
local max_types = tonumber(global[MAXTYPES]) or 0
local adding = {}
local creating = {}  -- the types this batch creates a task of, in the order first met
local keyed = {}
for i = FIRST, #ARGV, FIELDS do
  local ttype, idem = ARGV[i + 1], ARGV[i + 7]
  local p = policy_of(ttype)
  if p.unserved and (strict or p[REFUSE] == '1') then
    return redis.error_reply('UNSERVED ' .. ttype)
  end
  if max_types > 0 or tonumber(p[DEPTH]) > 0 then
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
      if not adding[ttype] then
        creating[#creating + 1] = ttype
      end
      adding[ttype] = (adding[ttype] or 0) + 1
    end
  end
end
if max_types > 0 and #creating > 0 then
  local types = redis.call('SCARD', K_TYPES)
  for _, ttype in ipairs(creating) do
    if redis.call('SISMEMBER', K_TYPES, ttype) == 0 then
      if types + 1 > max_types then
        return redis.error_reply('TOOMANYTYPES ' .. ttype .. ' ' .. types .. ' ' .. max_types)
      end
      types = types + 1
    end
  end
end
for ttype, n in pairs(adding) do
  local limit = tonumber(policies[ttype][DEPTH])
  if limit > 0 then
    local depth = 0
    for _, priority in ipairs(PRIORITIES) do
      depth = depth + (tonumber(redis.call('HGET', K_COUNTS, S_PENDING .. '|' .. priority .. '|' .. ttype)) or 0)
    end
    if depth + n > limit then
      return redis.error_reply('QUEUEFULL ' .. ttype .. ' ' .. depth .. ' ' .. limit)
    end
  end
end

-- Dependencies of task `id` ("<word> <deps>"): their ids and fields to store, how many have
-- not ended, and why the task must be cancelled (nil: it may run). Links from each dependency
-- to it go into `links`, written after the batch (one write per dependency): those that have
-- not ended settle it when they do, and every one names it, so a workflow reads whole from any
-- of its tasks.
local links = {}
local batch_ids = {}
local function dependencies_of(id, spec)
  local word, list = string.match(spec, '^(%a+) (.*)$')
  local ids, unended, failed, seen = {}, {}, nil, {}
  for dep in string.gmatch(list, '[^,]+') do
    if string.sub(dep, 1, 1) == '#' then
      dep = batch_ids[tonumber(string.sub(dep, 2)) + 1]
    end
    ids[#ids + 1] = dep
    local state = redis.call('HGET', key_task(dep), 'state')
    if state ~= S_SUCCEEDED and TERMINAL[state] then
      if word ~= 'run' and not failed then
        failed = 'dependency ' .. dep .. ' ended ' .. state
      end
    elseif state ~= S_SUCCEEDED and not seen[dep] then
      seen[dep] = true
      unended[#unended + 1] = dep
    end
  end
  for _, dep in ipairs(ids) do
    append(links, dep, id)
  end
  local deps = table.concat(ids, ',')
  local fields = {'depends_on', deps, 'on_dependency_failure', word}
  if #unended > 0 then
    fields[#fields + 1] = 'waiting_for'
    fields[#fields + 1] = table.concat(unended, ',')
  end
  return deps, fields, #unended, failed
end

-- The task of `ttype` that debounce key `dkey` names, while it waits for its first start
-- (scheduled, no attempt spent: a retry waiting out its backoff is not joined), or nil.
local function debounced_task(dkey, ttype)
  local holder = redis.call('GET', dkey)
  if not holder then
    return nil
  end
  local f = redis.call('HMGET', key_task(holder), 'state', 'type', 'priority', 'debounce_first_ms', 'attempt')
  if f[1] ~= S_SCHEDULED or f[2] ~= ttype or f[5] ~= '0' then
    return nil
  end
  return holder, f[3], tonumber(f[4])
end

-- When a debounced task submitted first at `first` starts, a submission at `now` joining it.
local function debounced_start(first, window, max_wait)
  local at = now + tonumber(window)
  if max_wait ~= '' then
    at = math.min(at, first + tonumber(max_wait))
  end
  return at
end

local result = {}
for i = FIRST, #ARGV, FIELDS do
  local id, ttype, priority, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local max_retries, timeout_ms, ready_ms, idem = ARGV[i + 4], ARGV[i + 5], tonumber(ARGV[i + 6]), ARGV[i + 7]
  local p = policies[ttype]
  if priority == '' then priority = p[PRIORITY] end
  if max_retries == '' then max_retries = p[RETRIES] end
  if timeout_ms == '' then timeout_ms = p[TIMEOUT] end
  local existing, keyed = nil, false
  -- A debounce key is its type's: the same key of another type names another task.
  local dkey, joined = ARGV[i + 12] ~= '' and key_debounce(ttype .. '|' .. ARGV[i + 12]), nil
  if dkey then
    local holder, holder_priority, first = debounced_task(dkey, ttype)
    if holder then
      local at = debounced_start(first, ARGV[i + 13], ARGV[i + 14])
      local fields = {'ready_ms', at}
      joined = 'joined'
      if ARGV[i + 15] == 'last' then
        joined = 'replaced'
        fields = {'ready_ms', at, 'payload', payload}
        if ARGV[i + 11] ~= '' then
          fields[#fields + 1] = 'headers'
          fields[#fields + 1] = ARGV[i + 11]
        else
          redis.call('HDEL', key_task(holder), 'headers')
        end
      end
      redis.call('HSET', key_task(holder), unpack(fields))
      redis.call('ZADD', K_SCHEDULED, at, holder)
      redis.call('SET', dkey, holder, 'PX', math.max(at - now, 0) + 60000)
      existing, priority = holder, holder_priority
    end
  end
  if joined then
    result[#result + 1] = {existing, 0, S_SCHEDULED, priority, joined}
    batch_ids[#batch_ids + 1] = existing
  else
  if idem ~= '' then
    existing = redis.call('GET', key_idempotency(idem))  -- false when there is none
    if not existing or redis.call('EXISTS', key_task(existing)) == 0 then
      existing = nil
    end
    keyed = existing ~= nil
  end
  local digest = nil
  local unique = ARGV[i + 9]
  if not existing and (unique == '1' or (unique == '' and p[UNIQUE] == '1')) then
    digest = redis.sha1hex(ttype .. '\n' .. payload)
    local holder = redis.call('GET', key_unique(digest))
    local state = holder and redis.call('HGET', key_task(holder), 'state')
    if state and not TERMINAL[state] then
      existing, digest = holder, nil
    end
  end
  if idem ~= '' and not keyed then
    redis.call('SET', key_idempotency(idem), existing or id, 'PX', p[WINDOW])
  end
  if existing then
    local known = redis.call('HMGET', key_task(existing), 'state', 'priority')
    result[#result + 1] = {existing, 0, known[1], known[2], ''}
    batch_ids[#batch_ids + 1] = existing
  else
    batch_ids[#batch_ids + 1] = id
    local fields = {
      'id', id, 'type', ttype, 'priority', priority, 'payload', payload, 'attempt', 0,
      'max_retries', max_retries, 'timeout_ms', timeout_ms, 'created_ms', now,
      'idempotency_key', idem}
    count('total|submitted', 1)
    local unended, failed = 0, nil
    if ARGV[i + 8] ~= '' then
      local deps, more
      deps, more, unended, failed = dependencies_of(id, ARGV[i + 8])
      for _, v in ipairs(more) do
        fields[#fields + 1] = v
      end
      if not failed and unended == 0 then
        fields[#fields + 1] = 'inputs'
        fields[#fields + 1] = inputs_of(deps)
      end
    end
    if digest and not failed then
      redis.call('SET', key_unique(digest), id)
      fields[#fields + 1] = 'unique_key'
      fields[#fields + 1] = digest
    end
    if ARGV[i + 11] ~= '' then
      fields[#fields + 1] = 'headers'
      fields[#fields + 1] = ARGV[i + 11]
    end
    local debounced = ''
    if dkey then
      debounced = 'created'
      for _, v in ipairs({'debounce_key', ARGV[i + 12], 'debounce_first_ms', now}) do
        fields[#fields + 1] = v
      end
      redis.call('SET', dkey, id, 'PX', ready_ms - now + 60000)
    end
    local group = ARGV[i + 16] ~= '' and ARGV[i + 16] or false
    if group then
      fields[#fields + 1] = 'group'
      fields[#fields + 1] = group
    end
    local expires = ARGV[i + 10]
    if expires ~= '' then
      fields[#fields + 1] = 'expires_ms'
      fields[#fields + 1] = expires
    end
    if not failed and expires ~= '' then
      append(zadds, K_DEADLINES, expires, id)
      note_due(tonumber(expires))
    end
    if failed then
      fields[#fields + 1] = 'error'
      fields[#fields + 1] = failed
      make_final(id, priority, ttype, S_CANCELLED, now, fields, {false, false})
      result[#result + 1] = {id, 1, S_CANCELLED, priority, debounced}
    elseif unended > 0 then
      make_blocked(id, priority, ttype, now, math.max(ready_ms, now), fields)
      result[#result + 1] = {id, 1, S_BLOCKED, priority, debounced}
    elseif ready_ms > now then
      make_scheduled(id, priority, ttype, ready_ms, fields)
      result[#result + 1] = {id, 1, S_SCHEDULED, priority, debounced}
    else
      make_ready(id, priority, ttype, now, false, fields, group)
      result[#result + 1] = {id, 1, S_PENDING, priority, debounced}
    end
  end
  end
end
for dep, dependents in pairs(links) do
  local known = redis.call('HGET', key_task(dep), 'dependents')
  local added = table.concat(dependents, ',')
  redis.call('HSET', key_task(dep), 'dependents', known and (known .. ',' .. added) or added)
end
flush()
return {result, unserved}
