-- Charge (delta > 0) or refund (delta < 0) units after the fact: gcra_adjust in algorithm.py.
-- A refund stops at an empty bucket (TAT = now); a charge may go into debt, up to
-- debt_windows windows past an empty bucket.
--
-- KEYS[1]  GCRA state: a hash, t = TAT whole ms, f = remainder in 1/limit ms
-- ARGV     limit, window_ms, delta, units_max (the clamp on |delta|), debt_windows
-- returns  now_ms
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local delta = tonumber(ARGV[3])
local units = math.min(math.abs(delta), tonumber(ARGV[4]))
local debt_windows = tonumber(ARGV[5])

local whole = math.floor(units / limit)
local part = units - whole * limit
local scaled = part * window
local span_frac_ms = math.floor(scaled / limit)
local span_ms, span_frac = whole * window + span_frac_ms, scaled - span_frac_ms * limit

local state = redis.call('HMGET', KEYS[1], 't', 'f')
local ms, frac = tonumber(state[1]), tonumber(state[2])
if ms == nil or ms < now then
  ms, frac = now, 0
else
  frac = math.min(frac or 0, limit - 1)
end

if delta >= 0 then
  ms, frac = ms + span_ms, frac + span_frac
  if frac >= limit then
    ms, frac = ms + 1, frac - limit
  end
  local cap = now + (1 + debt_windows) * window
  if ms > cap or (ms == cap and frac > 0) then
    ms, frac = cap, 0
  end
else
  ms, frac = ms - span_ms, frac - span_frac
  if frac < 0 then
    ms, frac = ms - 1, frac + limit
  end
  if ms < now then
    ms, frac = now, 0
  end
end

if ms > now or frac > 0 then
  redis.call('HSET', KEYS[1], 't', string.format('%d', ms), 'f', string.format('%d', frac))
  local ttl = ms - now
  if frac > 0 then
    ttl = ttl + 1
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('DEL', KEYS[1])
end
return now
