-- One chat as one of its members sees it: the newest message, the member's read
-- cursor and the number of messages after it; with ARGV[2], first move the cursor.
--
-- KEYS[1]  the chat's stream (see send.lua)    KEYS[2]  the chat's read cursors
-- ARGV[1]  the member's place in the chat ('0' or '1')
-- ARGV[2]  optional: the member has read everything up to this send_time
--
-- A read cursor never moves back, and never past the newest message (a later
-- message must still count as unread). unread = the newest message's number -
-- the number of the last message at or before the cursor: entry numbers count a
-- chat's messages (send.lua), so this is two O(log n) lookups, never a scan.
-- Messages trimmed by the retention count as read.
--
-- Returns {cursor, unread, newest entry id, sender's place, text as JSON}, the
-- last three absent when the chat holds no message.

local function number_of(id) return tonumber(string.match(id, '%d+$')) end

local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local cursor = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if not newest then
  return {string.format('%d', cursor), 0}
end
if ARGV[2] then
  local upto = math.min(tonumber(ARGV[2]), tonumber(string.match(newest[1], '^%d+')))
  if upto > cursor then
    cursor = upto
    redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', cursor))
  end
end
local read = 0
if cursor > 0 then
  local at = redis.call('XREVRANGE', KEYS[1], string.format('%d', cursor), '-', 'COUNT', 1)[1]
  if at then read = number_of(at[1]) end
end
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
read = math.max(read, number_of(oldest[1]) - 1)
local fields = newest[2]
return {string.format('%d', cursor), number_of(newest[1]) - read, newest[1], fields[1], fields[2]}
