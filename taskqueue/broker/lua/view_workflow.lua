-- Read a task's whole workflow in one step: every task linked to it through depends_on and
-- dependents, walked breadth first from it, each with what a workflow view shows.
-- KEYS[1]  namespace prefix
-- ARGV[1]  the task id
-- ARGV[2]  most tasks to read
-- Returns: {} when there is no such task, else {complete (1: every linked task was read),
--          then 7 fields per task: id, type, state, priority, depends_on, dependents, error}
local limit = tonumber(ARGV[2])
local seen = {[ARGV[1]] = true}
local queue = {ARGV[1]}
local out = {1}
local i = 1
while i <= #queue do
  local id = queue[i]
  i = i + 1
  local f = redis.call('HMGET', key_task(id), 'type', 'state', 'priority', 'depends_on', 'dependents', 'error')
  if f[2] then
    local o = #out
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, f[1], f[2], f[3]
    out[o + 5], out[o + 6], out[o + 7] = f[4] or '', f[5] or '', f[6] or ''
    for _, links in ipairs({f[4] or '', f[5] or ''}) do
      for linked in string.gmatch(links, '[^,]+') do
        if not seen[linked] then
          seen[linked] = true
          if #queue >= limit then
            out[1] = 0
          else
            queue[#queue + 1] = linked
          end
        end
      end
    end
  end
end
if #out == 1 then
  return {}
end
return out
