-- leaky_bucket.lua: mirror of ratelimit_mw.core.algorithms.leaky_bucket.
-- Shaping (nginx limit_req): one float per key, the time the queue drains.
-- Parameters: a = rule.interval, b = rule.tolerance (the max_delay).

local function leaky_bucket(state, now, interval, max_delay, cost)
  local start = now
  if state ~= nil and state > now then
    start = state
  end
  local delay = start - now
  -- a request of cost n is n unit requests arriving together: the last must fit
  local last = delay + (cost - 1) * interval
  if last > max_delay + EPS then
    local remaining = floor((max_delay - delay + EPS) / interval) + 1
    return false, state, max(remaining, 0), delay, last - max_delay, delay, 0
  end
  local drained = start + cost * interval
  local ahead = drained - now
  local remaining = floor((max_delay - ahead + EPS) / interval) + 1
  return true, drained, max(remaining, 0), ahead, 0, ahead, delay
end

-- A state lives at most max_delay + interval (+ EPS); it is fresh again at its own time.
local function leaky_bucket_lifetime(interval, max_delay)
  return max_delay + interval + EPS
end

ALGORITHMS.leaky_bucket = {
  step = leaky_bucket, load = load_time, store = time_store(leaky_bucket_lifetime, own_time),
}
