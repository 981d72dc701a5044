-- Read one page of a chat and tell whether more follows, in one atomic step.
--
-- KEYS[1]  the chat's sorted set
-- ARGV[1]  cursor: a send_time; 0 with reverse means "from the newest"
-- ARGV[2]  limit: page size
-- ARGV[3]  '1' for newest first (send_time <= cursor), '0' for oldest first
--          (send_time >= cursor)
--
-- Returns {members, next_cursor}: next_cursor is the send_time of the first
-- message after the page, or 0 when the page is the last one. One element more
-- than the page is read to learn it; each member begins with `[send_time,`.

local cursor = ARGV[1]
local limit = tonumber(ARGV[2])
local rows
if ARGV[3] == '1' then
  if cursor == '0' then
    cursor = '+inf'
  end
  rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], cursor, '-inf', 'LIMIT', 0, limit + 1)
else
  rows = redis.call('ZRANGEBYSCORE', KEYS[1], cursor, '+inf', 'LIMIT', 0, limit + 1)
end

local next_cursor = 0
if #rows > limit then
  next_cursor = tonumber(string.match(rows[#rows], '^%[(%d+),'))
  rows[#rows] = nil
end
return {rows, next_cursor}
