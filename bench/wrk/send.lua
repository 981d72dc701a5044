-- POST /api/send: a random one of the 1000 chats, a random sender of the two,
-- a random text of 40-80 characters, drawn anew for every request.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

setup = common.setup
init = common.init
request = common.send_request
done = common.done
