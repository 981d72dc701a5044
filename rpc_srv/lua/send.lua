-- Append one message to its chat's stream with the chat's next send_time, atomically.
--
-- KEYS[1]  the chat's stream: entry id <send_time>-<number>, one field:
--          the sender's place in the chat ('0' or '1') -> the text as a JSON string
-- KEYS[2]  the chat's read cursors: a hash, place -> send_time read up to
-- KEYS[3], KEYS[4]  with ARGV[5] = 2: the two members' conversation lists
--          (sorted sets chats:{<member>}: chat -> its newest send_time); on a
--          Redis Cluster they live in other slots and index.lua updates them
-- KEYS[3 + ARGV[5]]  optional: the idempotency key of this send
-- ARGV[1]  the sender's place    ARGV[2]  the text as a JSON string
-- ARGV[3]  seconds an idempotency key is remembered
-- ARGV[4]  retention in microseconds (0: keep everything)
-- ARGV[5]  how many conversation lists follow KEYS[2]: 0 or 2
--
-- Returns {send_time, duplicate, number}. duplicate is 1 when the idempotency key
-- already named an earlier send: its send_time and number are returned, nothing is
-- stored.
--
-- A stored message is announced on the shard channel new:{<chat>}, the key's name
-- with im: replaced (so the same Cluster slot as KEYS[1]), with its send_time: a
-- hint for waiting pulls (rpc_srv/notifications.py), sent only if the write is.
-- The sender's read cursor moves to the message (their own send is read).
--
-- send_time = max(the store's clock, the newest send_time + 1) and number = the
-- newest number + 1 (1 for a chat's first message), so both are unique and strictly
-- increasing per chat whichever replica sent it. Trimming (XADD MINID) never drops
-- the entry it adds, so the newest entry is always there to read. Numbers are
-- formatted with %d: Lua's default formatting keeps 14 digits only.

local lists = tonumber(ARGV[5])
local idempotency = KEYS[3 + lists]

if idempotency then
  local earlier = redis.call('GET', idempotency)
  if earlier then
    local entry = redis.call('XRANGE', KEYS[1], earlier, earlier, 'COUNT', 1)[1]
    return {tonumber(earlier), 1, entry and tonumber(string.match(entry[1], '%d+$')) or 0}
  end
end

local clock = redis.call('TIME')
local send_time = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local number = 1
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local last_id = newest and newest[1]
if not last_id and redis.call('EXISTS', KEYS[1]) == 1 then
  -- Emptied by hand (XTRIM, XDEL): the stream still knows its last id.
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last_id = info[i + 1] end
  end
end
if last_id then
  local newest_time, newest_number = string.match(last_id, '^(%d+)%-(%d+)$')
  send_time = math.max(send_time, tonumber(newest_time) + 1)
  number = tonumber(newest_number) + 1
end

local t = string.format('%d', send_time)
local id = t .. '-' .. string.format('%d', number)
local retention = tonumber(ARGV[4])
if retention > 0 then
  local oldest = string.format('%d', send_time - retention)
  redis.call('XADD', KEYS[1], 'MINID', '~', oldest, id, ARGV[1], ARGV[2])
else
  redis.call('XADD', KEYS[1], id, ARGV[1], ARGV[2])
end
redis.call('HSET', KEYS[2], ARGV[1], t)
if idempotency then
  redis.call('SET', idempotency, t, 'EX', ARGV[3])
end
local chat = string.sub(KEYS[1], 4)  -- '{<chat>}'
redis.call('SPUBLISH', 'new:' .. chat, t)
-- As index.lua does, for each list: only a newer send_time moves a chat up.
for i = 3, 2 + lists do
  if redis.call('ZADD', KEYS[i], 'GT', 'CH', t, string.sub(chat, 2, -2)) == 1 then
    redis.call('SPUBLISH', 'new:' .. string.sub(KEYS[i], 7), t)
  end
end
return {send_time, 0, number}
