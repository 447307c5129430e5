-- Lease up to `count` pending tasks of the given types to one worker.
-- Strict priority order (critical first), FIFO within a priority and type (and group: the
-- groups of a priority and type take turns); the types are visited in the order given, which
-- the worker rotates between claims for fairness.
-- KEYS[1]  namespace prefix
-- ARGV[1]  now (ms)
-- ARGV[2]  worker id
-- ARGV[3]  lease deadline (ms); the heartbeat extends it while the worker lives
-- ARGV[4]  count: how many tasks at most
-- ARGV[5]  guard: 1 to first take one task from each priority below the highest non-empty
--          one (the starvation guard), 0 for strictly by priority
-- ARGV[6]  hand-offs: '' for none; '+' and the token of the last hand-off the worker has
--          received ('+' alone: none) to take part in them (see _lib.lua): the claim ends the
--          worker's registration, returns its last hand-off unless that is the one it names,
--          and registers the worker again when it takes fewer than `count`
-- ARGV[7..] task types the worker can run
-- Limits (K_LIMITS, folded from the policy by set_policy.lua) hold a type's tasks back in its
-- queues: a rate limit lets one start every interval/count ms, up to `burst` at once (GCRA:
-- K_RATE holds when the next may start), a concurrency limit as many as its active count
-- leaves room for; a paused type none. A type held back is noted in K_HELD for stats and
-- metrics. A group concurrency limit parks a group with as many active tasks as it allows
-- (see _lib.lua: groups), so the rings hold only groups with room; a group rate limit rests a
-- group that started a task until its next may start, and the claim lets the groups whose
-- rest has ended back first.
-- A task taken off a queue past its deadline is not leased: it ends expired, and the claim
-- goes on to the next one (up to MAX_EXPIRED of them; past that, workers are woken to claim
-- again).
-- Returns: when a rate limit lets a held-back task start (ms; 0: none held back by a rate;
--          a claim that took fewer than `count` also counts the first resting group's),
--          the type and priority of each task ended expired (a flat list), the 12 fields and
--          the token of the worker's last hand-off if it is still leased to it and not
--          acknowledged (a list, empty for none; its lease extended, not counted against
--          `count`), then 12 fields per claimed task: id, type, priority, payload, attempt, max_retries, timeout_ms,
--          ready_ms, inputs ('' for a task without dependencies), expires_ms ('' for none),
--          headers (JSON; '' for none), group ('' for none).
local now, worker, deadline = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now_ms = tonumber(now)
local wanted = tonumber(ARGV[4])
local guard = ARGV[5] == '1'
local FIRST_TYPE = 7
local expired = {}
local MAX_EXPIRED = 1000
local handed = {}
local out = {0, expired, handed}
local leases = {}
local claimed = 0

-- The worker's registration for hand-offs ends here; its last hand-off comes back unless it
-- has it (its message may have been lost).
local hand_offs = ARGV[6] ~= ''
if hand_offs then
  unregister_idle(worker)
  local token, id, attempt = last_hand_off(worker)
  if token and token ~= string.sub(ARGV[6], 2) then
    local key = key_task(id)
    local f = redis.call('HMGET', key, 'state', 'worker_id', 'type', 'priority', 'group', unpack(LEASE_FIELDS))
    if f[1] == S_ACTIVE and f[2] == worker and f[7] == attempt then
      handed[1], handed[2], handed[3], handed[4] = id, f[3], f[4], f[6]
      handed[5], handed[6], handed[7], handed[8] = tonumber(attempt), f[8], f[9], f[10]
      handed[9], handed[10], handed[11], handed[12] = f[11] or '', f[12] or '', f[13] or '', f[5] or ''
      handed[13] = token
      leases[#leases + 1] = deadline
      leases[#leases + 1] = id
    end
  end
end

-- The limited types' budgets for this claim: how many may start, and why no more.
local budget, bound_by = {}, {}
local spacing, next_start, burst_of, rated = {}, {}, {}, {}
local limits = redis.call('HMGET', K_LIMITS, unpack(ARGV, FIRST_TYPE))
for i = 1, #ARGV - FIRST_TYPE + 1 do
  if limits[i] then
    local ttype = ARGV[i + FIRST_TYPE - 1]
    local count, interval, burst, concurrency, paused =
      string.match(limits[i], '^(%d+) (%d+) (%d+) (%d+) ([01])')
    count, burst, concurrency = tonumber(count), tonumber(burst), tonumber(concurrency)
    local allowed, why = wanted, nil
    if paused == '1' then
      allowed, why, count, concurrency = 0, 'paused', 0, 0
    end
    if count > 0 then
      local spaced = tonumber(interval) / count
      local at = math.max(tonumber(redis.call('HGET', K_RATE, ttype) or 0), now_ms)
      spacing[ttype], next_start[ttype], burst_of[ttype], rated[ttype] = spaced, at, burst, 0
      allowed, why = math.max(0, math.floor(burst - (at - now_ms) / spaced + 1e-9)), 'rate'
    end
    if concurrency > 0 then
      local fields = {}
      for p, priority in ipairs(PRIORITIES) do
        fields[p] = S_ACTIVE .. '|' .. priority .. '|' .. ttype
      end
      local active = 0
      for _, n in ipairs(redis.call('HMGET', K_COUNTS, unpack(fields))) do
        active = active + (tonumber(n) or 0)
      end
      if concurrency - active < allowed then
        allowed, why = math.max(0, concurrency - active), 'concurrency'
      end
    end
    budget[ttype], bound_by[ttype] = allowed, why
  end
end
local held = {}

-- The types with grouped tasks claim from their rings (see _lib.lua: groups); the rest from
-- their ready lists, as if groups did not exist.
local grouped = {}
for i, marked in ipairs(redis.call('HMGET', K_GROUPED, unpack(ARGV, FIRST_TYPE))) do
  grouped[ARGV[i + FIRST_TYPE - 1]] = marked ~= false
  grouped_type[ARGV[i + FIRST_TYPE - 1]] = marked ~= false
end

-- Let the groups of `ttype` whose rest ended by now back into the rings (those with room, in
-- the rings of the priorities they have tasks of), at most MAX_READMITTED: returns whether
-- more may be due.
local MAX_READMITTED = 1000
local function readmit_groups(ttype)
  local key = key_group_resting(ttype)
  local due = redis.call('ZRANGE', key, '-inf', now, 'BYSCORE', 'LIMIT', 0, MAX_READMITTED)
  if #due == 0 then
    return false
  end
  redis.call('ZREM', key, unpack(due))
  for _, group in ipairs(due) do
    if group_room(ttype, group) > 0 then
      rejoin_rings(ttype, group)
    end
  end
  return #due == MAX_READMITTED
end

local spaced_groups = {}  -- the grouped types with a group rate limit
local more_due = false
for i = FIRST_TYPE, #ARGV do
  if grouped[ARGV[i]] and group_spacing(ARGV[i]) > 0 then
    spaced_groups[#spaced_groups + 1] = ARGV[i]
    more_due = readmit_groups(ARGV[i]) or more_due
  end
end

local function has_ready(priority, ttype)
  if grouped[ttype] then
    return redis.call('EXISTS', key_ring(priority, ttype)) == 1
  end
  return redis.call('LLEN', key_ready(priority, ttype)) > 0
end

-- Lease the tasks `ids` (just taken off the queue of `group`, false for none) to the worker,
-- or end those past their deadline expired. Returns how many were leased.
local function lease(ids, priority, ttype, group)
  local leased = 0
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', key_task(id), unpack(LEASE_FIELDS))
    if would_expire(f[7], now_ms) then
      make_final(id, priority, ttype, S_EXPIRED, now_ms, {'error', EXPIRED_ERROR})
      expired[#expired + 1] = ttype
      expired[#expired + 1] = priority
    else
      start_lease(id, ttype, priority, f, worker, now, group, out)
      leases[#leases + 1] = deadline
      leases[#leases + 1] = id
      leased = leased + 1
    end
  end
  count_state(S_PENDING, priority, ttype, -#ids)
  count_state(S_ACTIVE, priority, ttype, leased)
  if group then
    count_group(key_group_pending(ttype), group, -#ids)
    count_group(key_group_active(ttype), group, leased)
  end
  return leased
end

-- Whether a claim meeting expired tasks should stop here and let workers come back.
local function too_many_expired(ttype)
  if #expired >= 2 * MAX_EXPIRED then
    woken[ttype] = true  -- more may wait behind the expired ones
    return true
  end
  return false
end

-- Up to `n` tasks of a type without groups, FIFO.
local function take_plain(priority, ttype, n)
  local queue = key_ready(priority, ttype)
  local started = 0
  while n > 0 do
    local ids = redis.call('LPOP', queue, n)
    if not ids then
      break
    end
    local leased = lease(ids, priority, ttype, false)
    started = started + leased
    local asked = n
    n = n - leased
    if #ids < asked or (n > 0 and too_many_expired(ttype)) then
      break
    end
  end
  return started
end

-- Up to `n` tasks of a grouped type, taking turns: the ring's members with the lowest turns
-- (at most n of them, so the cost grows with log(groups), not with groups) share the claim
-- evenly, each FIFO within its group, and move on by what they took; a member whose list
-- runs dry, or a group that reaches its type's group concurrency limit, leaves the ring.
local function take_fair(priority, ttype, n)
  local ring = key_ring(priority, ttype)
  local started = 0
  while n > 0 do
    local members = redis.call('ZRANGE', ring, 0, n - 1, 'WITHSCORES')
    if #members == 0 then
      break
    end
    local share = math.ceil(n / (#members / 2))
    for j = 1, #members, 2 do
      if n <= 0 then
        break
      end
      local member, turn = members[j], tonumber(members[j + 1])
      local group = member ~= '' and member or false
      local queue = queue_of(priority, ttype, group)
      local room = group and group_room(ttype, group) or math.huge
      local spacing = group and group_spacing(ttype) or 0
      local want = math.min(share, n, room, spacing > 0 and 1 or math.huge)
      local ids = want > 0 and redis.call('LPOP', queue, want) or {}
      local leased = #ids > 0 and lease(ids, priority, ttype, group) or 0
      if spacing > 0 and leased > 0 then
        park_group(ttype, group)  -- rests until its next start is due: out of every ring
        redis.call('ZADD', key_group_resting(ttype), now_ms + spacing, group)
      elseif room - leased <= 0 then
        park_group(ttype, group)  -- at its limit: out of every priority's ring
      elseif #ids < want or redis.call('LLEN', queue) == 0 then
        redis.call('ZREM', ring, member)
      else
        redis.call('ZADD', ring, 'XX', turn + #ids, member)
      end
      started = started + leased
      n = n - leased
    end
    if n > 0 and too_many_expired(ttype) then
      break
    end
  end
  return started
end

-- Up to `n` tasks of one priority and type, as far as the type's limits leave room.
local function take(priority, ttype, n)
  local room = budget[ttype]
  local limited = room ~= nil and room < n
  if limited then
    n = room
  end
  local started = 0
  if n > 0 then
    if grouped[ttype] then
      started = take_fair(priority, ttype, n)
    else
      started = take_plain(priority, ttype, n)
    end
  end
  if limited and (room == 0 or (started >= n and has_ready(priority, ttype))) then
    held[ttype] = bound_by[ttype]
  end
  if room then
    budget[ttype] = room - started
    if rated[ttype] then
      rated[ttype] = rated[ttype] + started
    end
  end
  claimed = claimed + started
  return started
end

if guard then
  local seen_higher = false
  for _, priority in ipairs(PRIORITIES) do
    for i = FIRST_TYPE, #ARGV do
      if claimed >= wanted then break end
      if seen_higher then
        if take(priority, ARGV[i], 1) > 0 then break end
      elseif has_ready(priority, ARGV[i]) then
        seen_higher = true
        break
      end
    end
  end
end

for _, priority in ipairs(PRIORITIES) do
  for i = FIRST_TYPE, #ARGV do
    if claimed >= wanted then break end
    take(priority, ARGV[i], wanted - claimed)
  end
end

local first_start = nil
for ttype, n in pairs(rated) do
  local at = next_start[ttype] + n * spacing[ttype]
  if n > 0 then
    redis.call('HSET', K_RATE, ttype, string.format('%.3f', at))
  end
  if held[ttype] == 'rate' then
    local starts = at - (burst_of[ttype] - 1) * spacing[ttype]
    first_start = first_start and math.min(first_start, starts) or starts
  end
end
local notes = {}
for ttype, why in pairs(held) do
  notes[#notes + 1] = ttype
  notes[#notes + 1] = now .. ' ' .. why
end
if #notes > 0 then
  redis.call('HSET', K_HELD, unpack(notes))
end
if claimed < wanted then
  for _, ttype in ipairs(spaced_groups) do
    local first = redis.call('ZRANGE', key_group_resting(ttype), 0, 0, 'WITHSCORES')
    if more_due or first[2] then
      local starts = more_due and now_ms or tonumber(first[2])
      first_start = first_start and math.min(first_start, starts) or starts
    end
  end
end
out[1] = first_start and math.ceil(first_start) or 0

call_chunked('ZADD', K_ACTIVE, leases)
flush()
if hand_offs and claimed < wanted then
  local types = table.concat(ARGV, ',', FIRST_TYPE)
  local offset = now_ms - redis_time()  -- a hand-off's lease runs on this worker's clock
  redis.call('HSET', K_IDLE_WORKERS, worker, (deadline - now_ms) .. ' ' .. offset .. ' ' .. types)
  for i = FIRST_TYPE, #ARGV do
    redis.call('SADD', key_idle(ARGV[i]), worker)
  end
end
return out
