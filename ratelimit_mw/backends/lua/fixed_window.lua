-- fixed_window.lua: mirror of ratelimit_mw.core.algorithms.fixed_window.
-- State {window_index, count}, stored as the text "index count".
-- Parameters: a = rule.period, b = rule.limit.

local function fixed_window(state, now, period, limit, cost)
  local index = floor(now / period)
  local count = 0
  if state ~= nil and state[1] == index then
    count = state[2]
  end
  local left = (index + 1) * period - now
  if count + cost > limit then
    local reset = 0
    if count ~= 0 then
      reset = left
    end
    return false, state, limit - count, reset, left, left, 0
  end
  count = count + cost
  return true, {index, count}, limit - count, left, 0, left, 0
end

-- "index count" or "index current previous" -> {numbers}
local function load_window(key)
  local v = redis.call('GET', key)
  if not v then
    return nil
  end
  local state = {}
  for field in string.gmatch(v, '%S+') do
    state[#state + 1] = tonumber(field)
  end
  return state
end

local function store_window(key, state, ttl, min_ms)
  local ms = ttl_ms(ttl, min_ms)
  if ms > 0 then
    -- '%d', not tostring(): Lua prints numbers with 14 significant digits
    local text = format('%d', state[1])
    for i = 2, #state do
      text = text .. ' ' .. format('%d', state[i])
    end
    redis.call('SET', key, text, 'PX', ms)
  else
    redis.call('DEL', key)
  end
end

ALGORITHMS.fixed_window = {step = fixed_window, load = load_window, store = store_window}
