-- Shared by the workload scripts: the chat names the runner preloads, random
-- texts, per-thread seeding, and the done() hook that prints one JSON line.
--
-- Chat i (0 <= i < 1000) is "user<2i>:user<2i+1>" with 4-digit numbers, the
-- canonical (sorted) spelling: bench/dataset.py builds the same names.

local M = {}

M.chats = 1000
M.alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,!?-"

function M.member(n)
  return string.format("user%04d", n)
end

function M.chat(i)
  return M.member(2 * i) .. ":" .. M.member(2 * i + 1)
end

function M.random_chat()
  return math.random(0, M.chats - 1)
end

-- Each thread gets its own id in setup() so its random stream differs.
local next_thread = 0
function M.setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

-- Seed from the runner's argument, so runs are repeatable per thread, and
-- build a pool of random characters: a text is then a slice of it, which is
-- far cheaper per request than drawing each character (wrk shares the CPU).
function M.init(args)
  local seed = tonumber(args[1] or "1") or 1
  math.randomseed(seed * 1000 + (thread_id or 0))
  local n = #M.alphabet
  local chars = {}
  for k = 1, 65536 do
    local c = math.random(1, n)
    chars[k] = string.sub(M.alphabet, c, c)
  end
  M.pool = table.concat(chars)
end

function M.random_text()
  local len = math.random(40, 80)
  local start = math.random(1, #M.pool - len)
  return string.sub(M.pool, start, start + len - 1)
end

function M.send_request()
  local i = M.random_chat()
  local sender = M.member(2 * i + math.random(0, 1))
  local body = '{"chat":"' .. M.chat(i) .. '","sender":"' .. sender
    .. '","text":"' .. M.random_text() .. '"}'
  return wrk.format("POST", "/api/send", { ["Content-Type"] = "application/json" }, body)
end

function M.pull_request()
  local path = "/api/pull?chat=" .. M.chat(M.random_chat()) .. "&cursor=0&limit=10"
  if math.random(1, 4) == 1 then
    path = path .. "&reverse=true"
  end
  return wrk.format("GET", path)
end

-- One line the runner parses: latencies in microseconds, counts, errors.
-- errors.status is what wrk prints as "Non-2xx or 3xx responses" (status > 399).
function M.done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    string.format('"duration_us":%d', summary.duration),
    string.format('"requests":%d', summary.requests),
    string.format('"bytes":%d', summary.bytes),
    string.format('"non2xx":%d', e.status),
    string.format('"connect":%d', e.connect),
    string.format('"read":%d', e.read),
    string.format('"write":%d', e.write),
    string.format('"timeout":%d', e.timeout),
    string.format('"mean_us":%.1f', latency.mean),
    string.format('"max_us":%d', latency.max),
  }
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    parts[#parts + 1] = string.format('"p%s_us":%d', tostring(p), latency:percentile(p))
  end
  io.write("BENCH_RESULT {" .. table.concat(parts, ",") .. "}\n")
end

return M
