-- renew.lua: extend a process's live leases on one in-flight key (see concurrency.lua).
-- KEYS[1]   the key's sorted set of leases
-- ARGV[1]   the caller's time in seconds, or '' for the server's TIME
-- ARGV[2]   the lease, in seconds
-- ARGV[3..] the members to renew
-- A member already past its expiry is gone (dropped here if no check dropped it yet):
-- its slot may have been given to another request, so it is not brought back.
-- Reply: per member, 1 renewed or 0 gone.
local now = tonumber(ARGV[1])
if now == nil then
  if redis.replicate_commands then
    redis.replicate_commands()
  end
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local lease = tonumber(ARGV[2])
local expires = string.format('%.17g', now + lease)
local out = {}
local kept = false
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i])
    out[#out + 1] = 1
    kept = true
  else
    if score then
      redis.call('ZREM', KEYS[1], ARGV[i])
    end
    out[#out + 1] = 0
  end
end
if kept then
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1)
end
return out
