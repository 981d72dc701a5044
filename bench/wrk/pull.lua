-- GET /api/pull of a random preloaded chat, first page of 10 (cursor=0); a
-- quarter of the requests read newest first (reverse=true).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

setup = common.setup
init = common.init
request = common.pull_request
done = common.done
