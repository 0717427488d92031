-- Extend a live lease to now + lease_ms: lease_renew in algorithm.py.
--
-- KEYS[1]  sorted set of leases
-- ARGV     lease_ms, lease_id
-- returns  {renewed (1/0), expires_at_ms}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease_ms = tonumber(ARGV[1])

local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))
if expiry == nil or expiry <= now then
  return {0, now}
end
local expires = now + lease_ms
redis.call('ZADD', KEYS[1], string.format('%d', expires), ARGV[2])
if redis.call('PTTL', KEYS[1]) < lease_ms then
  redis.call('PEXPIRE', KEYS[1], lease_ms)
end
return {1, expires}
