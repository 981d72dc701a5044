-- Store one message and give it the chat's next send_time, in one atomic step.
--
-- KEYS[1]  the chat's sorted set (score = send_time in microseconds)
-- KEYS[2]  optional: the idempotency key of this send
-- ARGV[1]  the member without its send_time: the JSON tail `"sender","text"]`
-- ARGV[2]  seconds an idempotency key is remembered
--
-- Returns {send_time, duplicate}: duplicate is 1 when KEYS[2] already named an
-- earlier send, whose send_time is returned and nothing is stored.
--
-- send_time = max(the store's clock, the chat's highest send_time + 1), so it is
-- unique and strictly increasing per chat whichever replica sent the message.
-- Numbers are formatted with %d: Lua's default formatting keeps 14 digits only.

if KEYS[2] then
  local earlier = redis.call('GET', KEYS[2])
  if earlier then
    return {tonumber(earlier), 1}
  end
end

local clock = redis.call('TIME')
local send_time = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] then
  local highest = tonumber(newest[2])
  if send_time <= highest then
    send_time = highest + 1
  end
end

local t = string.format('%d', send_time)
redis.call('ZADD', KEYS[1], t, '[' .. t .. ',' .. ARGV[1])
if KEYS[2] then
  redis.call('SET', KEYS[2], t, 'EX', ARGV[2])
end
return {send_time, 0}
