-- sliding_window.lua: mirror of ratelimit_mw.core.algorithms.sliding_window.
-- Two counters, the previous window weighted by its overlap; state
-- {window_index, current, previous} stored as "index current previous"
-- (helpers in fixed_window.lua). Parameters: a = rule.period, b = rule.limit.

local function sliding_window(state, now, period, limit, cost)
  local index = floor(now / period)
  local current = 0
  local previous = 0
  if state ~= nil then
    if state[1] == index then
      current, previous = state[2], state[3]
    elseif state[1] == index - 1 then
      previous = state[2]
    end
  end
  local start = index * period
  local weight = 1.0 - (now - start) / period
  local estimate = previous * weight + current
  if estimate + cost > limit + 1e-9 then
    local wait
    if current + cost <= limit then
      -- wait until the previous window's weight has shrunk enough
      wait = start + period * (1.0 - (limit - current - cost) / previous) - now
    elseif cost <= limit then
      -- wait for the next window, where this window becomes the previous one
      wait = start + period + period * (1.0 - (limit - cost) / current) - now
    else
      wait = 2 * period
    end
    local reset
    if current ~= 0 then
      reset = start + 2 * period - now
    else
      reset = start + period - now
    end
    local remaining = floor(limit - estimate + 1e-9)
    return false, state, max(remaining, 0), reset, max(wait, 0.0), reset, 0
  end
  current = current + cost
  local remaining = floor(limit - estimate - cost + 1e-9)
  local reset = start + 2 * period - now
  return true, {index, current, previous}, max(remaining, 0), reset, 0, reset, 0
end

ALGORITHMS.sliding_window = {step = sliding_window, load = load_window, store = store_window}
