-- Take an in-flight slot if fewer than limit leases are live: lease_acquire in algorithm.py.
-- The set holds lease id -> expiry ms; expired leases (a crashed process's) are dropped first.
--
-- KEYS[1]  sorted set of leases
-- ARGV     limit, lease_ms, lease_id
-- returns  {acquired (1/0), expires_at_ms}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local limit = tonumber(ARGV[1])
local lease_ms = tonumber(ARGV[2])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= limit then
  return {0, now}
end
local expires = now + lease_ms
redis.call('ZADD', KEYS[1], string.format('%d', expires), ARGV[3])
-- The set lives as long as its longest lease, so an idle key vanishes.
if redis.call('PTTL', KEYS[1]) < lease_ms then
  redis.call('PEXPIRE', KEYS[1], lease_ms)
end
return {1, expires}
