-- token_bucket.lua: mirror of ratelimit_mw.core.algorithms.token_bucket.
-- One float per key: the time at which the bucket was empty.
-- Parameters: a = rule.interval, b = rule.capacity.

local function token_bucket(state, now, interval, capacity, cost)
  local tokens
  if state == nil then
    tokens = capacity
  else
    tokens = (now - state) / interval
    if tokens > capacity then
      tokens = capacity
    end
  end
  if tokens + EPS / interval < cost then
    local missing = (capacity - tokens) * interval
    return false, state, max(floor(tokens + EPS / interval), 0), missing,
      (cost - tokens) * interval, missing, 0
  end
  tokens = tokens - cost
  local refill = (capacity - tokens) * interval
  return true, now - tokens * interval, floor(tokens + EPS / interval), refill, 0, refill, 0
end

-- A state lives at most capacity * interval (+ EPS); the bucket is full again then.
local function token_bucket_lifetime(interval, capacity)
  return capacity * interval + EPS
end

local function token_bucket_expiry(state, interval, capacity)
  return state + capacity * interval
end

ALGORITHMS.token_bucket = {
  step = token_bucket, load = load_time, store = time_store(token_bucket_lifetime, token_bucket_expiry),
}
