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

-- The holder of the leases a hit of an in-flight limit takes, and how many it takes
-- (set by check.lua from ARGV; read by concurrency.lua's store).
local LEASE_TOKEN = nil
local LEASE_COST = 1

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

-- Time states (gcra, token_bucket, leaky_bucket: one float each) live as fields
-- of shared hashes, not as keys of their own. A key 'p:{tag}rest:slot' names
-- field 'rest' of the hash 'p:{tag}:slot': every client whose hash starts with
-- the same tag shares one hash per rule (same hash tag: same Cluster slot). A
-- small hash is stored as one compact listpack, so a client costs its field and
-- value, ~26 bytes, instead of a key, its object and its expiry entry (~131 bytes
-- on Redis 7.0). Redis 7.0 has no per-field expiry, so:
--   * with M the longest life a state of the hash's rule can have (its fields
--     share the rule; min_ttl included), a write at time t sets the hash to expire
--     at t + 2M and notes t in the field '~'; a later write at most M after that
--     needs no PEXPIRE (its state lives at most M: it ends before the hash does),
--     so a busy hash is re-armed once per M, and an idle one is gone like a key;
--   * stale fields are swept when a new field brings the hash to 16, 32, 64...
--     fields: every state of the rule says when it is fresh again, so the sweep
--     drops exactly the fields a reader would treat as missing. Between sweeps a
--     hash holds at most about as many stale fields as live ones.
local find = string.find
local located, located_bucket, located_field = nil, nil, nil
local armed = {}  -- hash -> the time noted in its '~' field, or false (read by load_time)

-- 'p:{tag}rest:slot' -> 'p:{tag}:slot', 'rest' (rest never holds a ':'); a key
-- without that shape is field '' of a hash named like the key. The last answer is
-- kept: a check locates each key twice (load, then store).
local function locate(key)
  if key == located then
    return located_bucket, located_field
  end
  local open = find(key, '{', 1, true)
  local close = open and find(key, '}', open + 1, true)
  local colon = close and find(key, ':', close + 1, true)
  if colon == nil then
    located, located_bucket, located_field = key, key, ''
  else
    located, located_bucket, located_field = key, sub(key, 1, close) .. sub(key, colon), sub(key, close + 1, colon - 1)
  end
  return located_bucket, located_field
end

local function load_time(key)
  local bucket, field = locate(key)
  local got = redis.call('HMGET', bucket, field, '~')
  armed[bucket] = got[2] and decode_time(got[2]) or false
  if got[1] then
    return decode_time(got[1])
  end
  return nil
end

local function sweep(bucket, now, a, b, expiry)
  local n = redis.call('HLEN', bucket)
  local size = 16
  while size < n do
    size = size * 2
  end
  if size ~= n then
    return
  end
  local all = redis.call('HGETALL', bucket)
  local stale = {}
  for i = 1, #all, 2 do
    if all[i] ~= '~' and expiry(decode_time(all[i + 1]), a, b) <= now then
      stale[#stale + 1] = all[i]
    end
  end
  for i = 1, #stale, 1000 do  -- in slices: unpack() is bounded by Lua's C stack
    redis.call('HDEL', bucket, unpack(stale, i, math.min(i + 999, #stale)))
  end
end

-- The expiry of a state that is itself the time it is fresh again (gcra's TAT, the
-- leaky bucket's drain time).
local function own_time(state, a, b)
  return state
end

-- The store of a time algorithm. lifetime(a, b): the longest ttl its step can
-- return for the rule; expiry(state, a, b): when a state is fresh again (the
-- mirror of EXPIRY_FUNCTIONS in ratelimit_mw/core/algorithms.py).
local function time_store(lifetime, expiry)
  return function(key, state, ttl, min_ms, now, a, b)
    local bucket, field = locate(key)
    if ttl_ms(ttl, min_ms) <= 0 then
      -- Step.ttl <= 0: the state is already indistinguishable from fresh
      redis.call('HDEL', bucket, field)
      return
    end
    local longest = max(lifetime(a, b), min_ms / 1000)
    local since = armed[bucket]  -- nil: not loaded in this call (then the hash is re-armed)
    local added
    if since and now - since <= longest and now >= since then
      added = redis.call('HSET', bucket, field, encode_time(state))
    else
      added = redis.call('HSET', bucket, field, encode_time(state), '~', encode_time(now))
      if not since then  -- '~' was new too (or unknown: then a sweep may wait a field)
        added = added - 1
      end
      redis.call('PEXPIRE', bucket, ceil(2 * longest * 1000) + 1)
      armed[bucket] = now
    end
    if added == 1 then
      sweep(bucket, now, a, b, expiry)
    end
  end
end

-- Reply values: integers stay integers; floats travel as exact text.
local function float_out(x)
  if x == 0 then
    return 0
  end
  return format('%.17g', x)
end
