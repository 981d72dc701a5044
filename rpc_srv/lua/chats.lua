-- One page of a member's conversation list, most recent activity first, atomically.
--
-- KEYS[1]  the member's list: a sorted set chats:{<member>}, chat -> newest send_time
-- ARGV[1]  how many chats to return; one more is read to tell whether more follow
-- ARGV[2], ARGV[3]  optional: the page starts after this (send_time, chat), the
--          last entry of the previous page
--
-- The list is ordered by (send_time, chat) descending, chats of one send_time
-- by their bytes as the sorted set orders them, so a walk from one entry to
-- the next is well defined even with ties. The entries of the cursor's
-- send_time are read whole and those not after the cursor skipped; the chats
-- are compared byte by byte here (Lua's own < follows the server's locale).
--
-- Returns {newest send_time of the list (0 if empty), chat, send_time, chat, ...}.

local want = tonumber(ARGV[1]) + 1

local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {top[2] or '0'}
local rows
if ARGV[2] then
  local ties = redis.call('ZCOUNT', KEYS[1], ARGV[2], ARGV[2])
  rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], '-inf', 'WITHSCORES',
                    'LIMIT', 0, ties + want)
else
  rows = redis.call('ZREVRANGE', KEYS[1], 0, want - 1, 'WITHSCORES')
end
local at = ARGV[2] and tonumber(ARGV[2])
for i = 1, #rows, 2 do
  local chat, score = rows[i], rows[i + 1]
  if not at or tonumber(score) < at or before(chat, ARGV[3]) then
    out[#out + 1] = chat
    out[#out + 1] = score
    if #out > 2 * want then break end
  end
end
return out
