-- Soak mix: one send to four pulls over 200 chats, unique texts.
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function request()
  counter = counter + 1
  local u = math.random(1, 200)
  local chat = string.format("soak%d:peer%d", u, u)
  if counter % 5 == 0 then
    local body = string.format(
      '{"chat":"%s","sender":"soak%d","text":"soak message %d-%d padded to a realistic length"}',
      chat, u, id, counter)
    return wrk.format("POST", "/api/send", {["Content-Type"] = "application/json"}, body)
  end
  local reverse = (counter % 4 == 0) and "true" or "false"
  return wrk.format("GET", "/api/pull?chat=" .. chat .. "&limit=10&reverse=" .. reverse)
end
