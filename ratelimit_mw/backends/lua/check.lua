-- check.lua: the dispatcher, last part of the one script, so a request with any
-- number of rules and algorithms is one EVALSHA (one round trip, atomic).
--
-- KEYS[i]   storage key of rule i (all in one hash slot, so Cluster runs it)
-- ARGV[1]   'hit' or 'peek'
-- ARGV[2]   the caller's time in seconds, or '' for the server's TIME
-- ARGV[3]   cost (hit only)
-- ARGV[4]   min_ttl in milliseconds (the backend's floor for key TTLs)
-- ARGV[5 + 3(i-1) ..] per rule: algorithm name, parameter a, parameter b
--
-- Reply, per rule: allowed (1/0), remaining, reset_after, retry_after, delay;
-- for 'peek', the cost-0 step then the cost-1 step (ratelimit_mw.core.evaluate.inspect).
-- All-or-nothing: every rule is evaluated first; states are written only if
-- every rule admits the request (and its cost is not 0).

local mode = ARGV[1]
local now = tonumber(ARGV[2])
if now == nil then
  -- Redis < 5 replicates scripts verbatim, and TIME would break that; since 5
  -- effects replication is the default (and the only mode in 7), this is a no-op.
  if redis.replicate_commands then
    redis.replicate_commands()
  end
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cost = tonumber(ARGV[3])
local min_ms = tonumber(ARGV[4])

local n = #KEYS
local algos, params_a, params_b, states = {}, {}, {}, {}
for i = 1, n do
  local base = 2 + 3 * i
  local algo = ALGORITHMS[ARGV[base]]
  if algo == nil then
    return redis.error_reply('ratelimit: unknown algorithm ' .. tostring(ARGV[base]))
  end
  algos[i] = algo
  params_a[i] = tonumber(ARGV[base + 1])
  params_b[i] = tonumber(ARGV[base + 2])
  states[i] = algo.load(KEYS[i])
end

local out = {}
local function emit(allowed, remaining, reset_after, retry_after, delay)
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = float_out(reset_after)
  out[#out + 1] = float_out(retry_after)
  out[#out + 1] = float_out(delay)
end

if mode == 'peek' then
  for i = 1, n do
    for c = 0, 1 do
      local ok, _, remaining, reset_after, retry_after, _, delay =
        algos[i].step(states[i], now, params_a[i], params_b[i], c)
      emit(ok, remaining, reset_after, retry_after, delay)
    end
  end
  return out
end

local all_ok = true
local new_states, ttls = {}, {}
for i = 1, n do
  local ok, state, remaining, reset_after, retry_after, ttl, delay =
    algos[i].step(states[i], now, params_a[i], params_b[i], cost)
  emit(ok, remaining, reset_after, retry_after, delay)
  all_ok = all_ok and ok
  new_states[i] = state
  ttls[i] = ttl
end
if all_ok and cost ~= 0 then
  for i = 1, n do
    algos[i].store(KEYS[i], new_states[i], ttls[i], min_ms)
  end
end
return out
