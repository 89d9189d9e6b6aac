-- sliding_log.lua: mirror of ratelimit_mw.core.algorithms.sliding_log.
-- Exact moving window: a Redis list of timestamps (encode_time), oldest first,
-- one per admitted unit of cost. The Python tuple is read here through LINDEX
-- instead of being loaded whole, so a check costs O(log limit) reads; the state
-- passed around is the key, and the "new state" is {first_live, now, cost}.
-- Parameters: a = rule.period, b = rule.limit.

local function log_at(key, i) -- 0-based, like the Python tuple
  return decode_time(redis.call('LINDEX', key, i))
end

-- bisect_right(log, cutoff): the number of entries <= cutoff
local function log_bisect_right(key, size, cutoff)
  if log_at(key, 0) > cutoff then
    return 0 -- the common case: nothing has expired
  end
  local lo, hi = 1, size
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if cutoff < log_at(key, mid) then
      hi = mid
    else
      lo = mid + 1
    end
  end
  return lo
end

local function sliding_log(key, now, period, limit, cost)
  local size = redis.call('LLEN', key)
  local first_live = 0
  if size > 0 then
    first_live = log_bisect_right(key, size, now - period)
  end
  local count = size - first_live
  if count + cost > limit then
    local excess = count + cost - limit
    local wait = period
    if excess <= count then
      wait = log_at(key, first_live + excess - 1) + period - now
    end
    local reset = 0
    if count > 0 then
      reset = log_at(key, -1) + period - now
    end
    return false, nil, limit - count, reset, max(wait, 0.0), reset, 0
  end
  return true, {first_live, now, cost}, limit - count - cost, period, 0, period, 0
end

local function load_log(key)
  return key
end

local function store_log(key, state, ttl, min_ms)
  local ms = ttl_ms(ttl, min_ms)
  if ms <= 0 then
    redis.call('DEL', key)
    return
  end
  if state[1] > 0 then
    redis.call('LTRIM', key, state[1], -1)
  end
  local stamp = encode_time(state[2])
  local left = state[3]
  while left > 0 do -- RPUSH in chunks: Lua's unpack() has a stack limit
    local batch = {}
    for i = 1, math.min(left, 1000) do
      batch[i] = stamp
    end
    redis.call('RPUSH', key, unpack(batch))
    left = left - #batch
  end
  redis.call('PEXPIRE', key, ms)
end

ALGORITHMS.sliding_log = {step = sliding_log, load = load_log, store = store_log}
