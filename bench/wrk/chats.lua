-- GET /api/chats?user=<user>&limit=<limit>: one user's first page of
-- conversations, the same request every time (bench/chats.py):
--   wrk -s chats.lua http://127.0.0.1:PORT -- <seed> <user> <limit>
-- The path is set in init(), before wrk builds its request: with no request()
-- hook the request is built once per thread and sent at full speed.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

function init(args)
  local user = args[2] or "u10"
  local limit = args[3] or "20"
  wrk.path = "/api/chats?user=" .. user .. "&limit=" .. limit
end

done = common.done
