-- One send to four pulls, as in send.lua and pull.lua, in a fixed rotation
-- per connection thread.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

setup = common.setup
init = common.init
done = common.done

local n = 0
request = function()
  n = n + 1
  if n % 5 == 0 then
    return common.send_request()
  end
  return common.pull_request()
end
