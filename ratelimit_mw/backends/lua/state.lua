-- state.lua: shared helpers, first part of the one script (see check.lua).
--
-- The algorithm files that follow mirror ratelimit_mw/core/algorithms.py line for
-- line: same constants, same operation order, so the doubles they compute are
-- bit-identical to Python's (both are IEEE 754 binary64 with round-to-nearest).
-- Floats arrive as Python repr() text and leave as '%.17g' text: both round-trip
-- exactly, whereas a Lua number returned to Redis would be truncated to an integer.

local EPS = 1e-6
local floor = math.floor
local max = math.max
local ceil = math.ceil
local tonumber = tonumber
local format = string.format
local byte = string.byte
local sub = string.sub

-- Every algorithm registers {step, load, store} here under its Python name.
local ALGORITHMS = {}

-- A time is stored as the integer number of 2^-22 s when that is exact, which it
-- is for every time after 2004 (a double >= 2^30 has no bits below 2^-22): Redis
-- keeps a decimal integer of up to 20 digits inside the object header (encoding
-- 'int'), so the state costs no allocation of its own. Other values (fake clocks
-- in tests) fall back to 'f' followed by the exact '%.17g' text.
local SCALE = 4194304

local function encode_time(x)
  local m = x * SCALE
  if m == floor(m) and m < 9e18 and m > -9e18 then
    return format('%d', m)
  end
  return 'f' .. format('%.17g', x)
end

local function decode_time(v)
  if byte(v, 1) == 102 then -- 'f'
    return tonumber(sub(v, 2))
  end
  return tonumber(v) / SCALE
end

-- Step.ttl in whole milliseconds, rounded up so Redis never forgets a state
-- before the Python model would; min_ms is the backend's min_ttl option.
local function ttl_ms(ttl, min_ms)
  return max(ceil(ttl * 1000), min_ms)
end

-- One float per key (gcra, token_bucket, leaky_bucket).
local function load_time(key)
  local v = redis.call('GET', key)
  if v then
    return decode_time(v)
  end
  return nil
end

local function store_time(key, state, ttl, min_ms)
  local ms = ttl_ms(ttl, min_ms)
  if ms > 0 then
    redis.call('SET', key, encode_time(state), 'PX', ms)
  else
    -- Step.ttl <= 0: the state is already indistinguishable from fresh
    redis.call('DEL', key)
  end
end

-- Reply values: integers stay integers; floats travel as exact text.
local function float_out(x)
  if x == 0 then
    return 0
  end
  return format('%.17g', x)
end
