-- Shared helpers, prepended (after the generated key prelude) to every script.
-- A script collects list pushes, sorted-set adds, counter deltas and events while it runs and
-- flush() writes them at the end: a batch of a thousand tasks costs one RPUSH per list, one ZADD
-- per set, one HINCRBY per distinct counter and one PUBLISH, not one of each per task.
--
-- flush() also keeps K_TYPES to the task types that have a task counted in K_COUNTS (pending,
-- scheduled, active or dead): a type enters when one of its counters is created and leaves, in
-- the same script, when its last one goes. So a type's bookkeeping goes with its last task,
-- listings walk only the types that have tasks, and max_task_types counts what exists.

local counts = {}
local counted_type = {}  -- counts field -> its task type (the per-type counters only)
local events = {}
local woken = {}
local pushes = {}
local fronts = {}
local zadds = {}
local earliest_due = nil
local group_counts = {}  -- key -> group -> change (see groups, below)

local function count(field, n)
  counts[field] = (counts[field] or 0) + n
end

local function count_state(state, priority, ttype, n)
  local field = state .. '|' .. priority .. '|' .. ttype
  counted_type[field] = ttype
  count(field, n)
end

-- Whether `ttype` is a valid task type name (taskqueue/models.py: TYPE_RULE).
local function valid_type(ttype)
  return #ttype <= MAX_TYPE_LENGTH and string.find(ttype, TYPE_PATTERN) ~= nil
end

-- Whether any task of `ttype` is counted (in a live state, or dead).
local function type_has_tasks(ttype)
  local fields = {}
  for _, state in ipairs(COUNTED_STATES) do
    for _, priority in ipairs(PRIORITIES) do
      fields[#fields + 1] = state .. '|' .. priority .. '|' .. ttype
    end
  end
  for _, held in ipairs(redis.call('HMGET', K_COUNTS, unpack(fields))) do
    if held then
      return true
    end
  end
  return false
end

local function event(id, ttype, state)
  events[#events + 1] = {id, ttype, state}
end

local function append(tbl, key, ...)
  local list = tbl[key]
  if not list then
    list = {}
    tbl[key] = list
  end
  for _, v in ipairs({...}) do
    list[#list + 1] = v
  end
end

-- Run `cmd key <values...>` in chunks small enough for Lua's unpack().
local function call_chunked(cmd, key, values)
  for i = 1, #values, 1000 do
    redis.call(cmd, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

-- Whether a task with deadline `expires` (a field as read; false: none) that would next start
-- at `start` (ms) can no longer run: a task must start before its deadline.
local function would_expire(expires, start)
  return expires and start >= tonumber(expires)
end

-- The fields a lease reads from a task's hash (claim.lua: lease; hand_off below).
local LEASE_FIELDS = {'payload', 'attempt', 'max_retries', 'timeout_ms', 'ready_ms', 'inputs', 'expires_ms', 'headers'}

-- Lease task `id` (pending, just taken off its queue), whose LEASE_FIELDS are `f`, to `worker`
-- from `now`, and append its claim fields (see claim.lua) to `out`. Returns the attempt it
-- starts; the caller moves its counts and sets its deadline in K_ACTIVE.
local function start_lease(id, ttype, priority, f, worker, now, group, out)
  local attempt = tonumber(f[2]) + 1
  redis.call('HSET', key_task(id), 'state', S_ACTIVE, 'attempt', attempt, 'worker_id', worker, 'started_ms', now)
  local o = #out
  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, ttype, priority, f[1]
  out[o + 5], out[o + 6], out[o + 7], out[o + 8] = attempt, f[3], f[4], f[5]
  out[o + 9], out[o + 10], out[o + 11], out[o + 12] = f[6] or '', f[7] or '', f[8] or '', group or ''
  event(id, ttype, S_ACTIVE)
  return attempt
end

local grouped_type = {}  -- type -> whether K_GROUPED has it, as read (or written) by this script

local function is_grouped(ttype)
  local known = grouped_type[ttype]
  if known == nil then
    known = redis.call('HEXISTS', K_GROUPED, ttype) == 1
    grouped_type[ttype] = known
  end
  return known
end

-- Hand-offs. A worker whose claim came back short (claim.lua, asked with hand-offs) registers
-- as idle for its types: K_IDLE_WORKERS holds its lease length, how far its clock is ahead of
-- Redis's and its types, key_idle(type) its id. A task that becomes pending while a worker
-- waits for its type is leased to that worker by the script that made it pending, as a claim
-- would lease it, and published on the worker's channel: an idle worker starts it after one
-- message instead of a wake-up and a claim's round trip. The registration ends with the
-- hand-off (the worker's next claim makes another if nothing more is pending). Each hand-off
-- has a token (Redis's time in µs), by which the worker takes it once however it hears of it.
-- K_HANDED keeps the worker's last hand-off until the worker goes; its claims return it until
-- one names its token: a message lost with a broken subscription costs a claim, not a lease
-- that runs out. Only a task a claim would lease
-- as it is goes this way: of a type without limits (K_LIMITS, pauses included) and without
-- groups, and not past its deadline; the most urgent first. Its lease starts on the worker's
-- clock (Redis's time, moved by the registration's offset), as a claim's would, not on the
-- submitter's, which may be far off.
local readied = {}  -- type -> {id, priority, queue list, now, ...}: ungrouped tasks made pending

-- End `worker`'s hand-off registration, if it has one.
local function unregister_idle(worker)
  local entry = redis.call('HGET', K_IDLE_WORKERS, worker)
  if entry then
    redis.call('HDEL', K_IDLE_WORKERS, worker)
    for ttype in string.gmatch(string.match(entry, '^%S+ %S+ (.*)$'), '[^,]+') do
      redis.call('SREM', key_idle(ttype), worker)
    end
  end
end

-- Forget a worker's hand-offs: it stopped, or died.
local function forget_handoffs(worker)
  unregister_idle(worker)
  redis.call('HDEL', K_HANDED, worker)
end

-- `worker`'s last hand-off as K_HANDED keeps it (written by hand_off, below): its token, task
-- id and attempt (a string), or nothing.
local function last_hand_off(worker)
  local last = redis.call('HGET', K_HANDED, worker)
  if last then
    return string.match(last, '^(%S+) (%S+) (%d+)$')
  end
end

local function remove_value(list, value)
  for i = 1, #list do
    if list[i] == value then
      table.remove(list, i)
      return
    end
  end
end

-- Redis's clock: ms, and µs as text (a hand-off's token).
local function redis_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. string.format('%06d', tonumber(t[2]))
end

-- Hand the tasks in `readied` to idle workers, as far as they go; the types with tasks left
-- pending are woken.
local function hand_off()
  local rank = {}
  local clock, token = nil, nil
  for r, priority in ipairs(PRIORITIES) do
    rank[priority] = r
  end
  for ttype, entries in pairs(readied) do
    local idle = key_idle(ttype)
    local left = #entries / 4
    -- A type may have become grouped since its task was readied (a later task of the batch).
    if redis.call('SCARD', idle) > 0 and redis.call('HEXISTS', K_LIMITS, ttype) == 0
        and not is_grouped(ttype) then
      while true do
        local best = nil
        for i = 1, #entries, 4 do
          if entries[i] and (not best or rank[entries[i + 1]] < rank[entries[best + 1]]) then
            best = i
          end
        end
        if not best then
          break
        end
        local id, priority, list, now = entries[best], entries[best + 1], entries[best + 2], tonumber(entries[best + 3])
        local f = redis.call('HMGET', key_task(id), unpack(LEASE_FIELDS))
        if would_expire(f[7], now) then
          entries[best] = false  -- left for a claim to end
        else
          local worker = redis.call('SPOP', idle)
          if not worker then
            break
          end
          local lease_ms, offset = string.match(redis.call('HGET', K_IDLE_WORKERS, worker) or '', '^(%d+) (%-?%d+) ')
          unregister_idle(worker)
          if lease_ms then
            entries[best] = false
            left = left - 1
            remove_value(list, id)
            if not clock then
              clock, token = redis_time()
            end
            local start = clock + tonumber(offset)
            local fields = {}
            local attempt = start_lease(id, ttype, priority, f, worker, start, false, fields)
            redis.call('ZADD', K_ACTIVE, start + tonumber(lease_ms), id)
            count_state(S_PENDING, priority, ttype, -1)
            count_state(S_ACTIVE, priority, ttype, 1)
            fields[#fields + 1] = token
            redis.call('HSET', K_HANDED, worker, token .. ' ' .. id .. ' ' .. attempt)
            redis.call('PUBLISH', key_worker_channel(worker), cjson.encode(fields))
          end
        end
      end
    end
    if left > 0 then
      woken[ttype] = true
    end
  end
  readied = {}
end

local function flush()
  hand_off()
  local born, gone = {}, {}
  local freed = {}  -- types whose active count fell: a concurrency limit may have room again
  for field, n in pairs(counts) do
    if n < 0 and counted_type[field] and string.sub(field, 1, #S_ACTIVE + 1) == S_ACTIVE .. '|' then
      freed[#freed + 1] = counted_type[field]
    end
    if n ~= 0 then
      local now_n = redis.call('HINCRBY', K_COUNTS, field, n)
      local ttype = counted_type[field]
      if now_n == 0 then
        redis.call('HDEL', K_COUNTS, field)
        if ttype then gone[ttype] = true end
      elseif ttype and n > 0 and now_n == n then
        born[ttype] = true
      end
    end
  end
  for ttype in pairs(born) do
    redis.call('SADD', K_TYPES, ttype)
  end
  for ttype in pairs(gone) do
    if not born[ttype] and not type_has_tasks(ttype) then
      redis.call('SREM', K_TYPES, ttype)
    end
  end
  for key, ids in pairs(pushes) do
    call_chunked('RPUSH', key, ids)
  end
  for key, ids in pairs(fronts) do
    -- LPUSH puts its last argument first: push in reverse so the tasks keep their order.
    local reversed = {}
    for i = #ids, 1, -1 do
      reversed[#reversed + 1] = ids[i]
    end
    call_chunked('LPUSH', key, reversed)
  end
  for key, pairs_ in pairs(zadds) do
    call_chunked('ZADD', key, pairs_)
  end
  for key, changes in pairs(group_counts) do
    for group, n in pairs(changes) do
      if n ~= 0 and tonumber(redis.call('ZINCRBY', key, n, group)) <= 0 then
        redis.call('ZREM', key, group)
      end
    end
  end
  if #freed > 0 then
    local limits = redis.call('HMGET', K_LIMITS, unpack(freed))
    for i, ttype in ipairs(freed) do
      if limits[i] and string.match(limits[i], '^%d+ %d+ %d+ (%d+) ') ~= '0' then
        woken[ttype] = true
      end
    end
  end
  local wake = {}
  for ttype in pairs(woken) do
    wake[#wake + 1] = ttype
  end
  if earliest_due then
    wake[#wake + 1] = '@' .. earliest_due
  end
  if #wake > 0 then
    redis.call('PUBLISH', K_WAKE_CHANNEL, table.concat(wake, ','))
  end
  if #events > 0 then
    redis.call('PUBLISH', K_EVENTS_CHANNEL, cjson.encode(events))
  end
end

-- The task-state moves below each write the task's hash once: the caller's `fields` (a flat
-- field/value list, may be empty) are set together with the new state.

-- Groups (fair share within a priority). A task submitted with a group waits in its group's
-- list, K_GROUP_READY(priority, type, group), not in K_READY; the groups of a (priority, type)
-- that have pending tasks are the members of its ring, K_RING(priority, type), each scored
-- with its turn: how many tasks it has started since it joined, counted from the lowest turn
-- of the ring when it joined. A claim takes from the members with the lowest turns first and
-- moves each on by what it took, so the groups take turns and one group's backlog does not
-- delay another's first task. Once a type has grouped tasks (K_GROUPED), its tasks without a
-- group take their turn too, as the member '': while a ring exists, '' is in it exactly when
-- K_READY of its (priority, type) holds tasks. A type that never had a group keeps no ring,
-- and claims and submits of it do what they did before groups existed.
-- K_GROUP_PENDING(type) and K_GROUP_ACTIVE(type) count each group's pending and active tasks
-- for stats (top groups by backlog) and limits; group_counts collects their changes and
-- flush() writes them. A type's group concurrency limit (the last field of its K_LIMITS entry)
-- parks a group that has as many active tasks as it allows: it leaves the rings, keeping its
-- lists, and joins them again when one of its tasks stops being active. So the ring's members
-- are the groups with pending tasks and room to start one, and a claim never walks past a
-- parked group. A group rate limit (its last two fields) spaces a group's starts: a group that
-- starts a task rests, out of the rings, in K_GROUP_RESTING(type) scored with when it may
-- start the next; the first claim after that lets it back in (claim.lua: readmit_groups).

local function count_group(key, group, n)
  local changes = group_counts[key]
  if not changes then
    changes = {}
    group_counts[key] = changes
  end
  changes[group] = (changes[group] or 0) + n
end

-- The fields of a K_LIMITS entry (see set_policy.lua), as numbers: count, interval, burst,
-- concurrency, paused, group concurrency, group count, group interval. An entry written before
-- a field existed reads 0 (no limit) for it.
local LIMIT_FIELDS = 8
local function parse_limits(entry)
  local fields = {}
  for n in string.gmatch(entry or '', '%d+') do
    fields[#fields + 1] = tonumber(n)
  end
  for i = #fields + 1, LIMIT_FIELDS do
    fields[i] = 0
  end
  return fields
end

-- type -> {most active tasks per group, ms between two starts of a group} (0: no such limit)
local group_limits = {}

local function group_limits_of(ttype)
  local limits = group_limits[ttype]
  if limits == nil then
    local f = parse_limits(redis.call('HGET', K_LIMITS, ttype))
    limits = {f[6], f[7] > 0 and f[8] / f[7] or 0}
    group_limits[ttype] = limits
  end
  return limits
end

local function group_limit(ttype)
  return group_limits_of(ttype)[1]
end

local function group_spacing(ttype)
  return group_limits_of(ttype)[2]
end

-- Whether `group` rests under its type's group rate limit: out of the rings until a claim
-- lets it back (claim.lua: readmit_groups).
local function is_resting(ttype, group)
  return group_spacing(ttype) > 0 and redis.call('ZSCORE', key_group_resting(ttype), group) ~= false
end

-- The active tasks of `group` now: as stored, with this script's changes not yet flushed.
local function group_active(ttype, group)
  local key = key_group_active(ttype)
  local changes = group_counts[key]
  return tonumber(redis.call('ZSCORE', key, group) or 0) + (changes and changes[group] or 0)
end

-- How many more tasks of `group` may start (math.huge: no limit).
local function group_room(ttype, group)
  local limit = group_limit(ttype)
  if limit == 0 then
    return math.huge
  end
  return limit - group_active(ttype, group)
end

-- Take `group`, at its type's group concurrency limit, out of the rings of every priority.
local function park_group(ttype, group)
  for _, priority in ipairs(PRIORITIES) do
    redis.call('ZREM', key_ring(priority, ttype), group)
  end
end

-- The list a pending task of `group` (false or '': none) waits in.
local function queue_of(priority, ttype, group)
  if group and group ~= '' then
    return key_group_ready(priority, ttype, group)
  end
  return key_ready(priority, ttype)
end

-- Whether the list `queue` holds tasks, counting those this script pushes.
local function has_queued(queue)
  return pushes[queue] or fronts[queue] or redis.call('LLEN', queue) > 0
end

-- Put `member` in the ring of (priority, type) unless it is there: it joins at the lowest turn,
-- so it is served in the round now going on.
local function join_ring(priority, ttype, member)
  local ring = key_ring(priority, ttype)
  local lowest = redis.call('ZRANGE', ring, 0, 0, 'WITHSCORES')
  redis.call('ZADD', ring, 'NX', lowest[2] or 0, member)
end

-- Put `group` back in the ring of each priority it has tasks queued in, having left them all
-- (parked at its limit, or resting). Returns whether it joined any.
local function rejoin_rings(ttype, group)
  local joined = false
  for _, priority in ipairs(PRIORITIES) do
    if has_queued(key_group_ready(priority, ttype, group)) then
      join_ring(priority, ttype, group)
      joined = true
    end
  end
  return joined
end

-- Note that `ttype` has grouped tasks, the first time one comes: from now on its claims walk
-- rings, so its tasks without a group already waiting (in Redis, or pushed by this script)
-- join each priority's ring as ''.
local function mark_grouped(ttype)
  if is_grouped(ttype) then
    return
  end
  grouped_type[ttype] = true
  redis.call('HSET', K_GROUPED, ttype, 1)
  for _, priority in ipairs(PRIORITIES) do
    if has_queued(key_ready(priority, ttype)) then
      join_ring(priority, ttype, '')
    end
  end
end

-- `group` of a task as its caller read it: nil reads it from the task's hash.
local function group_of(id, group)
  if group == nil then
    group = redis.call('HGET', key_task(id), 'group')
  end
  return group or false
end

-- Queue task `id` at the back of its ready list (`front`: at the front, where a task goes that
-- was interrupted before it could finish). `group` is the task's group as its caller read it
-- (false: none; nil: read here).
local function make_ready(id, priority, ttype, now, front, fields, group)
  group = group_of(id, group)
  local queues = front and fronts or pushes
  local queue = queue_of(priority, ttype, group)
  append(queues, queue, id)
  local grouped = true
  if group then
    mark_grouped(ttype)
    if group_room(ttype, group) > 0 and not is_resting(ttype, group) then
      join_ring(priority, ttype, group)
    end
    count_group(key_group_pending(ttype), group, 1)
  elseif is_grouped(ttype) then
    join_ring(priority, ttype, '')
  else
    grouped = false
  end
  redis.call('HSET', key_task(id), 'state', S_PENDING, 'ready_ms', now, unpack(fields))
  count_state(S_PENDING, priority, ttype, 1)
  if grouped then
    woken[ttype] = true
  else
    append(readied, ttype, id, priority, queues[queue], now)  -- hand_off wakes if it must
  end
  event(id, ttype, S_PENDING)
end

-- A task of `group` (false: none) leaves the active state. A group that was parked at its
-- limit (see groups, above) joins the rings of its priorities with pending tasks again.
local function leave_active(priority, ttype, group)
  count_state(S_ACTIVE, priority, ttype, -1)
  if group then
    count_group(key_group_active(ttype), group, -1)
    if group_room(ttype, group) == 1 and not is_resting(ttype, group) and rejoin_rings(ttype, group) then
      woken[ttype] = true
    end
  end
end

-- Something is due for the scheduler at `at` (ms): a scheduled task, or a deadline. flush()
-- tells the daemons' schedulers the earliest, so one sleeping until later wakes for it.
local function note_due(at)
  if not earliest_due or at < earliest_due then
    earliest_due = at
  end
end

local function make_scheduled(id, priority, ttype, at, fields)
  append(zadds, K_SCHEDULED, at, id)
  note_due(at)
  redis.call('HSET', key_task(id), 'state', S_SCHEDULED, 'ready_ms', at, unpack(fields))
  count_state(S_SCHEDULED, priority, ttype, 1)
  event(id, ttype, S_SCHEDULED)
end

-- Dependencies. A task submitted with `depends_on` is stored blocked, its field 'waiting_for'
-- naming the dependencies that have not ended (comma-separated ids), and each dependency's
-- field 'dependents' names it. When a task ends, make_final settles its dependents in the same
-- script: a success (or any end, for a dependent that runs anyway) takes it off the
-- dependent's 'waiting_for', and the last one releases the dependent with its dependencies'
-- results as 'inputs'; a dead, cancelled or expired dependency cancels the dependent, which
-- settles its own dependents in turn. Only a dependency the dependent still waits for counts,
-- so a task that ends twice (dead, requeued, ended again) settles nothing twice; and the attempt fences
-- every report, so each dependent is released or cancelled exactly once, whichever script
-- and worker end its dependencies.

local function make_blocked(id, priority, ttype, now, ready_ms, fields)
  -- Written at once, not at flush(): a task blocked and released by one script must not
  -- come back in the set.
  redis.call('ZADD', K_BLOCKED, now, id)
  redis.call('HSET', key_task(id), 'state', S_BLOCKED, 'ready_ms', ready_ms, unpack(fields))
  count_state(S_BLOCKED, priority, ttype, 1)
  event(id, ttype, S_BLOCKED)
end

-- The results of the tasks in `ids` (comma-separated), in order, as one JSON array: null for
-- one that did not succeed (or whose record is gone).
local function inputs_of(ids)
  local results = {}
  for dep in string.gmatch(ids, '[^,]+') do
    local f = redis.call('HMGET', key_task(dep), 'state', 'result')
    local result = f[1] == S_SUCCEEDED and f[2] or ''
    results[#results + 1] = result ~= '' and result or 'null'
  end
  return '[' .. table.concat(results, ',') .. ']'
end

local settle  -- defined after make_final, which it calls (and which calls it)
local settling = nil  -- while settle() runs: ended tasks whose dependents are still to settle

-- End task `id` in a terminal state kept in a sorted set (succeeded, dead, cancelled,
-- expired), let go of its unique key and its deadline, and settle its dependents. `ends` is
-- {dependents, unique_key, expires_ms}, its fields as the caller read them (false: none); nil
-- reads them.
local function make_final(id, priority, ttype, state, now, fields, ends)
  append(zadds, STATE_ZSET[state], now, id)
  redis.call('HSET', key_task(id), 'state', state, 'finished_ms', now, unpack(fields))
  if state == S_DEAD then
    count_state(S_DEAD, priority, ttype, 1)
  end
  count('total|' .. state, 1)
  event(id, ttype, state)
  ends = ends or redis.call('HMGET', key_task(id), 'dependents', 'unique_key', 'expires_ms')
  local dependents, unique = ends[1], ends[2]
  if unique and redis.call('GET', key_unique(unique)) == id then
    redis.call('DEL', key_unique(unique))
  end
  if ends[3] then
    redis.call('ZREM', K_DEADLINES, id)
  end
  if dependents and dependents ~= '' then
    if settling then  -- a dependent cancelled while settling: its turn comes in the loop
      settling[#settling + 1] = {id, state, dependents}
    else
      settling = {{id, state, dependents}}
      local i = 1
      while i <= #settling do
        settle(settling[i], now)
        i = i + 1
      end
      settling = nil
    end
  end
end

-- Remove `id` from the structure of its current live state (never a terminal one); `group`
-- as for make_ready.
local function take_out(id, state, priority, ttype, group)
  if state == S_PENDING then
    group = group_of(id, group)
    local queue = queue_of(priority, ttype, group)
    redis.call('LREM', queue, 1, id)
    if group then
      count_group(key_group_pending(ttype), group, -1)
    end
    if (group or is_grouped(ttype)) and redis.call('LLEN', queue) == 0 then
      redis.call('ZREM', key_ring(priority, ttype), group or '')
    end
  else
    redis.call('ZREM', STATE_ZSET[state], id)
  end
  count_state(state, priority, ttype, -1)
end

-- Release or cancel the dependents of one ended task: `ended` is {id, state, dependents}.
settle = function(ended, now)
  local parent, state = ended[1], ended[2]
  for child in string.gmatch(ended[3], '[^,]+') do
    local key = key_task(child)
    local c = redis.call('HMGET', key, 'state', 'priority', 'type', 'on_dependency_failure', 'ready_ms', 'depends_on', 'waiting_for')
    local rest, waited = {}, false
    for dep in string.gmatch(c[1] == S_BLOCKED and c[7] or '', '[^,]+') do
      if dep == parent then
        waited = true
      else
        rest[#rest + 1] = dep
      end
    end
    if waited then
      local priority, ttype = c[2], c[3]
      if state == S_SUCCEEDED or c[4] == 'run' then
        if #rest > 0 then
          redis.call('HSET', key, 'waiting_for', table.concat(rest, ','))
        else
          take_out(child, S_BLOCKED, priority, ttype)
          local fields = {'inputs', inputs_of(c[6]), 'waiting_for', ''}
          local ready_ms = tonumber(c[5])
          if ready_ms > now then
            make_scheduled(child, priority, ttype, ready_ms, fields)
          else
            make_ready(child, priority, ttype, now, false, fields)
          end
        end
      else
        take_out(child, S_BLOCKED, priority, ttype)
        make_final(child, priority, ttype, S_CANCELLED, now,
          {'error', 'dependency ' .. parent .. ' ended ' .. state})
      end
    end
  end
end

-- One policy setting of task type `ttype` as in force: the type's live layer, its config
-- layer, then the global live and config layers, else `fallback` (see taskqueue/broker/policy.py;
-- enqueue.lua resolves its settings the same way, all at once).
local function policy_setting(name, ttype, fallback)
  local typed = redis.call('HMGET', K_POLICY_LIVE, name .. '|' .. ttype, name)
  local config = redis.call('HMGET', K_POLICY_CONFIG, name .. '|' .. ttype, name)
  return typed[1] or config[1] or typed[2] or config[2] or fallback
end

-- Deadlines. A task submitted with one (`expires_ms`) is in K_DEADLINES until it ends. It
-- never starts after it: a claim that meets it past its deadline ends it expired instead
-- (claim.lua), promote.lua ends those whose deadline passed while they waited, and a task
-- sent back to wait (a retry, a snooze, a release at shutdown) whose next start would come
-- after its deadline ends expired at once (would_expire).

local EXPIRED_ERROR = 'its deadline passed before it started'

-- End waiting task `id` (blocked, pending or scheduled) as expired.
local function expire(id, state, priority, ttype, now)
  take_out(id, state, priority, ttype)
  make_final(id, priority, ttype, S_EXPIRED, now, {'error', EXPIRED_ERROR})
end

-- A failed attempt (the processor raised, timed out, or its worker died): retry after
-- min(max_ms, base_ms * 2^(attempt-1)) scaled by `jitter` in [0, 1) ("full jitter"), or
-- dead-letter it when it has no retries left; a retry that would start after the task's
-- deadline (`expires`, false for none) ends it expired; `group` as for make_ready. Returns the
-- state the task moved to.
local function fail_attempt(id, priority, ttype, attempt, max_retries, now, err, tb, jitter, base_ms, max_ms, expires, group)
  local fields = {'error', err, 'traceback', tb}
  count('total|failed', 1)
  if attempt > max_retries then
    make_final(id, priority, ttype, S_DEAD, now, fields)
    return S_DEAD
  end
  local cap = math.min(max_ms, base_ms * math.pow(2, attempt - 1))
  local delay = math.floor(cap * jitter)
  if would_expire(expires, now + math.max(delay, 0)) then
    make_final(id, priority, ttype, S_EXPIRED, now, fields)
    return S_EXPIRED
  end
  count('total|retried', 1)
  if delay <= 0 then
    make_ready(id, priority, ttype, now, false, fields, group)
    return S_PENDING
  end
  make_scheduled(id, priority, ttype, now + delay, fields)
  return S_SCHEDULED
end

-- Task views (view.lua, view_by_key.lua): each large field left in Redis, its size read with
-- HSTRLEN, so a reader pays for what it is sent, not for what the task holds.

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

-- The task `id` with each of `names` over `limit` bytes cut (the first `json_fields` of them
-- hold JSON, cut to nothing; the rest text, cut to their first whole characters): {} when
-- there is no such task, else {fields, cuts}, the flat field/value pairs of its hash and the
-- flat pairs of each cut field's name and full size.
local function view_task(id, limit, json_fields, names)
  local key = key_task(id)
  local cuts = {}
  local cut = {}
  for j, name in ipairs(names) do
    local size = redis.call('HSTRLEN', key, name)
    if size > limit then
      cuts[#cuts + 1] = name
      cuts[#cuts + 1] = size
      cut[name] = j <= json_fields and 'json' or 'text'
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
    return {}
  end
  return {fields, cuts}
end
