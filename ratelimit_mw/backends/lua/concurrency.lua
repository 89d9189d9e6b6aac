-- concurrency.lua: mirror of ratelimit_mw.core.algorithms.concurrency (in-flight limits).
-- The state is a sorted set of leases: member = the holder's token (token#2, #3...
-- for a cost above 1), score = when the lease expires, in the script's time. Loading
-- drops the expired leases and counts the live ones, so a worker that died holding
-- slots gives them back when their leases run out. check.lua sets LEASE_TOKEN and
-- LEASE_COST (state.lua) before a hit.
-- Parameters: a = rule.period (the lease, seconds), b = rule.limit.

local function concurrency(state, now, lease, limit, cost)
  local count = state or 0
  if count + cost > limit then
    return false, state, max(limit - count, 0), 1.0, 1.0, 1.0, 0
  end
  count = count + cost
  return true, count, limit - count, 0, 0, lease, 0
end

local function load_leases(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', format('%.17g', now))
  return redis.call('ZCARD', key)
end

local function store_leases(key, state, ttl, min_ms, now, lease, limit)
  if LEASE_TOKEN == nil or LEASE_TOKEN == '' then
    error('ratelimit: an in-flight limit needs a lease token')
  end
  local expires = format('%.17g', now + lease)
  redis.call('ZADD', key, expires, LEASE_TOKEN)
  for i = 2, LEASE_COST do
    redis.call('ZADD', key, expires, LEASE_TOKEN .. '#' .. i)
  end
  -- every lease of the key has the same length, so the newest one outlives the others
  redis.call('PEXPIRE', key, ttl_ms(lease, min_ms) + 1)
end

ALGORITHMS.concurrency = {step = concurrency, load = load_leases, store = store_leases}
