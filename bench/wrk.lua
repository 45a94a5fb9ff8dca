-- The benchmark's load for wrk: one script for every target, so the client does the same work for each.
--
--   wrk -t2 -c64 -d15s --latency -s bench/wrk.lua URL -- mode=read|revalidate|post data=FILE seed=N
--
-- FILE is a Lua table written by bench/run.py for the target being measured:
--   api      "comments" (our API and the ceiling's) or "isso" (Isso's own API)
--   reads    request paths of the thread reads, one per page
--   etags    the ETag each of those answered with (for mode=revalidate)
--   pages    each page's key as a JSON string, quotes included
--   posts    the path a new comment on each page is posted to
--   bodies   comment bodies, JSON-escaped (without quotes); each post makes its own unique
-- A POST comes from its own client address (X-Forwarded-For, in 198.18.0.0/15, the range set
-- aside for benchmarks; the server trusts the proxy header from 127.0.0.1), with its own email
-- address and a body that no other post has, so neither the rate limit nor duplicate
-- detection has anything to do. At the end it prints one line, BENCH_JSON {...}, for run.py.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local WORDS = {"amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "juniper",
               "kestrel", "lagoon", "maple", "nectar", "orchid", "prairie", "quartz", "raven", "sierra", "tundra"}

local function words_for(n)
  local out = {}
  repeat
    table.insert(out, WORDS[(n % #WORDS) + 1])
    n = math.floor(n / #WORDS)
  until n == 0
  return table.concat(out, " ")
end

function init(args)
  local options = {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then options[key] = value end
  end
  mode = options.mode or "read"
  seed = tonumber(options.seed or "0")
  data = dofile(options.data)
  statuses = {}
  counter = 0
  math.randomseed(seed * 1000 + id + 1)
  if mode ~= "read" and mode ~= "revalidate" and mode ~= "post" then
    error("mode must be read, revalidate or post, not " .. tostring(mode))
  end
  if mode == "revalidate" and #data.etags ~= #data.reads then
    error("revalidate needs one ETag per page")
  end
end

local function post_request()
  counter = counter + 1
  local page = math.random(#data.pages)
  local unique = seed * 50000 + id * 25000 + counter
  local address = unique % 131072
  local ip = string.format("198.%d.%d.%d", 18 + math.floor(address / 65536), math.floor(address / 256) % 256,
                           address % 256)
  local text = "Reader note " .. words_for(unique) .. ". " .. data.bodies[math.random(#data.bodies)]
  local author = "Reader " .. words_for(unique % 997)
  local email = string.format("r%d-%d-%d@mail.example", seed, id, counter)
  local body
  if data.api == "isso" then
    body = '{"text": "' .. text .. '", "author": "' .. author .. '", "email": "' .. email ..
           '", "website": null, "title": "Article"}'
  else
    body = '{"page": ' .. data.pages[page] .. ', "body": "' .. text .. '", "author": "' .. author ..
           '", "email": "' .. email .. '"}'
  end
  return wrk.format("POST", data.posts[page],
                    {["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip}, body)
end

function request()
  if mode == "post" then
    return post_request()
  end
  local page = math.random(#data.reads)
  if mode == "revalidate" then
    return wrk.format("GET", data.reads[page], {["If-None-Match"] = data.etags[page]})
  end
  return wrk.format("GET", data.reads[page])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ", ")))
end
