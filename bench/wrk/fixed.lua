-- One fixed request, the URL given to wrk (the pong ceiling, the data-scale
-- pulls): no request() hook, so wrk sends its prebuilt request at full speed.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

done = common.done
