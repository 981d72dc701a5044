-- Move one chat from the sorted-set layout to its stream, a chunk per call.
--
-- KEYS[1]  the chat's key: a sorted set of the earlier layout (score = send_time,
--          member = the JSON array [send_time, sender, text]), a stream once moved
-- KEYS[2]  the stream being built (same slot); it becomes KEYS[1] at the end
-- ARGV[1]  how many messages to copy in this call at most
-- ARGV[2]  the chat, "first:second": a sender's place is 0 for first, 1 for second
--
-- Returns {done, copied}: done is 1 once KEYS[1] is a stream (or gone).
--
-- Each call copies the messages after the newest one already copied, numbering
-- them on from it (1, 2, ...), into entries as send.lua makes them. The sorted
-- set stays whole until the call that finds nothing left after the copy: that
-- call puts the stream in its place. So a migration may stop between any two
-- calls and go on later, two may run at once, and a message that a sender of the
-- earlier version adds meanwhile is copied too.

local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'zset' then
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('migrate: ' .. KEYS[1] .. ' holds a ' .. kind)
  end
  redis.call('DEL', KEYS[2])
  return {1, 0}
end

local after, number = '-inf', 0
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if newest then
  local send_time, seq = string.match(newest[1], '^(%d+)%-(%d+)$')
  after, number = '(' .. send_time, tonumber(seq)
end
local places = {}
places[string.match(ARGV[2], '^[^:]*:(.*)$')] = '1'
places[string.match(ARGV[2], '^([^:]*):')] = '0'
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], after, '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[1])
local entries = {}
for i = 1, #rows, 2 do
  local message = cjson.decode(rows[i])
  local place = places[message[2]]
  if not place then
    return redis.error_reply('migrate: a message of ' .. KEYS[1] .. ' names no member as sender')
  end
  number = number + 1
  entries[#entries + 1] = {string.format('%d-%d', tonumber(rows[i + 1]), number), place, message[3]}
end
for _, entry in ipairs(entries) do
  redis.call('XADD', KEYS[2], entry[1], entry[2], cjson.encode(entry[3]))
end

local copied = #rows / 2
if copied < tonumber(ARGV[1]) then
  redis.call('UNLINK', KEYS[1])
  redis.call('RENAME', KEYS[2], KEYS[1])
  return {1, copied}
end
return {0, copied}
