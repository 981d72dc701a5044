-- Put a chat in one member's conversation list at its newest send_time, if newer.
--
-- KEYS[1]  the member's list: a sorted set chats:{<member>}, chat -> newest send_time
-- ARGV[1]  the canonical chat    ARGV[2]  a send_time of a message stored in it
--
-- ZADD GT: a send_time older than the one listed changes nothing, so the update
-- may be applied late, twice or out of order (a retried send repeats it). A
-- change is announced on the shard channel new:{<member>} (this key's slot), the
-- hint that wakes a waiting GET /api/chats. Returns 1 if the list changed.

if redis.call('ZADD', KEYS[1], 'GT', 'CH', ARGV[2], ARGV[1]) == 1 then
  redis.call('SPUBLISH', 'new:' .. string.sub(KEYS[1], 7), ARGV[2])
  return 1
end
return 0
