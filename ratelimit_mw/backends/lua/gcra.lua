-- gcra.lua: mirror of ratelimit_mw.core.algorithms.gcra.
-- Generic cell rate algorithm: one float (theoretical arrival time) per key.
-- Parameters: a = rule.interval, b = rule.tolerance.

local function gcra(state, now, interval, tolerance, cost)
  local tat = now
  if state ~= nil and state > now then
    tat = state
  end
  local new_tat = tat + cost * interval
  local ahead = new_tat - now
  if ahead > tolerance + EPS then
    local used = tat - now
    local remaining = floor((tolerance - used + EPS) / interval)
    return false, state, max(remaining, 0), used, ahead - tolerance, used, 0
  end
  local remaining = floor((tolerance - ahead + EPS) / interval)
  return true, new_tat, remaining, ahead, 0, ahead, 0
end

-- A state lives at most tolerance (+ EPS); it is fresh again at its own time.
local function gcra_lifetime(interval, tolerance)
  return tolerance + EPS
end

ALGORITHMS.gcra = {step = gcra, load = load_time, store = time_store(gcra_lifetime, own_time)}
