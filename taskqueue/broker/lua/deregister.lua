-- Remove a worker's registration when it stops cleanly; its task types stop counting as served
-- at once, unless another registered worker serves them too.
-- KEYS[1]  namespace prefix
-- ARGV[1]  worker id
-- Returns: {1 if it was registered (else 0), the id and attempt of its last hand-off (or '' and
--          0)}. A worker deregisters once it has reported every task it ran, so a hand-off
--          still active at that attempt never reached it (its message came after the drain):
--          the caller gives it back (finish.lua, 'interrupted') instead of leaving it to the
--          lease's expiry.
local function types_of(worker)
  local info = redis.call('HGET', key_worker(worker), 'info')
  if not info then
    return {}
  end
  local ok, decoded = pcall(cjson.decode, info)
  return (ok and type(decoded) == 'table' and decoded.task_types) or {}
end
local leaving = types_of(ARGV[1])
local _, last_id, last_attempt = last_hand_off(ARGV[1])
redis.call('DEL', key_worker(ARGV[1]))
forget_handoffs(ARGV[1])
local removed = redis.call('ZREM', K_WORKERS, ARGV[1])
if next(leaving) then
  for _, other in ipairs(redis.call('ZRANGE', K_WORKERS, 0, -1)) do
    for ttype in pairs(types_of(other)) do
      leaving[ttype] = nil
    end
  end
  local gone = {}
  for ttype in pairs(leaving) do
    gone[#gone + 1] = ttype
  end
  if #gone > 0 then
    redis.call('HDEL', K_SERVED, unpack(gone))
  end
end
return {removed, last_id or '', tonumber(last_attempt) or 0}
