-- Admit a request only if every rule allows it, then charge every rule: one atomic step.
-- The same steps as gcra_hit / gcra_hit_all in algorithm.py (keep them in step); see its
-- docstring for why every value here stays an exact integer below 2^53.
--
-- KEYS[i]          GCRA state of rule i: a hash, t = TAT whole ms, f = remainder in 1/limit ms
-- ARGV[3i-2 .. 3i] limit, window_ms, cost of rule i
-- returns          {now_ms, admitted, then per rule: allowed, remaining, reset_ms, retry_ms}
--                  retry_ms is -1 when the cost exceeds the limit (no wait can admit it)
--
-- Time comes from the Redis server, so gateway processes with skewed clocks agree.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- units * window / limit as (whole ms, remainder), whole windows split off first.
local function span(units, limit, window)
  local whole = math.floor(units / limit)
  local part = units - whole * limit
  local scaled = part * window
  local ms = math.floor(scaled / limit)
  return whole * window + ms, scaled - ms * limit
end

-- max(TAT, now): a missing or past TAT is an empty bucket.
local function start(key, limit)
  local state = redis.call('HMGET', key, 't', 'f')
  local ms, frac = tonumber(state[1]), tonumber(state[2])
  if ms == nil or ms < now then
    return now, 0
  end
  return ms, math.min(frac or 0, limit - 1)
end

local function ceil_ms(ms, frac)
  if frac > 0 then
    return ms + 1
  end
  return ms
end

local function remaining(ms, frac, limit, window)
  local ahead = ms - now
  if ahead >= window then
    return 0
  end
  return math.floor(((window - ahead) * limit - frac) / window)
end

local out = {now, 1}
local news = {}
local unchanged = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i - 2])
  local window = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local ms, frac = start(KEYS[i], limit)
  local allowed, left, reset, retry = 0, remaining(ms, frac, limit, window), ceil_ms(ms, frac) - now, -1
  unchanged[i] = {left, reset}
  if cost <= limit then
    local add_ms, add_frac = span(cost, limit, window)
    local new_ms, new_frac = ms + add_ms, frac + add_frac
    if new_frac >= limit then
      new_ms, new_frac = new_ms + 1, new_frac - limit
    end
    local allow_ms = new_ms - window
    if allow_ms < now or (allow_ms == now and new_frac == 0) then
      allowed, retry = 1, 0
      left = remaining(new_ms, new_frac, limit, window)
      reset = ceil_ms(new_ms, new_frac) - now
      news[i] = {new_ms, new_frac}
    else
      retry = ceil_ms(allow_ms, new_frac) - now
    end
  end
  if allowed == 0 then
    out[2] = 0
  end
  local base = 2 + 4 * (i - 1)
  out[base + 1], out[base + 2], out[base + 3], out[base + 4] = allowed, left, reset, retry
end

if out[2] == 0 then
  -- Refused: a rule that would have allowed reports its state uncharged, as nothing was.
  for i = 1, #KEYS do
    local base = 2 + 4 * (i - 1)
    out[base + 2], out[base + 3] = unchanged[i][1], unchanged[i][2]
  end
else
  for i = 1, #KEYS do
    local new_ms, new_frac = news[i][1], news[i][2]
    local ttl = ceil_ms(new_ms, new_frac) - now
    if ttl > 0 then
      -- %d: Lua would write a large double as 1.7e+12; these are exact integers.
      redis.call('HSET', KEYS[i], 't', string.format('%d', new_ms), 'f', string.format('%d', new_frac))
      redis.call('PEXPIRE', KEYS[i], ttl)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return out
