-- check.lua: the dispatcher, last part of the one script, so a request with any
-- number of rules and algorithms is one EVALSHA (one round trip, atomic).
--
-- One check:
-- KEYS[i]   storage key of rule i (all in one hash slot, so Cluster runs it)
-- ARGV[1]   'hit' or 'peek'
-- ARGV[2]   the caller's time in seconds, or '' for the server's TIME
-- ARGV[3]   cost (hit only)
-- ARGV[4]   min_ttl in milliseconds (the backend's floor for key TTLs)
-- ARGV[5 + 3(i-1) ..] per rule: algorithm name, parameter a, parameter b
-- ARGV[5 + 3n]  the lease token, when a rule is an in-flight limit (never batched)
--
-- Reply, per rule: allowed (1/0), remaining, reset_after, retry_after, delay;
-- for 'peek', the cost-0 step then the cost-1 step (ratelimit_mw.core.evaluate.inspect).
-- All-or-nothing: every rule is evaluated first; states are written only if
-- every rule admits the request (and its cost is not 0).
--
-- Several checks at once (the async backend coalesces concurrent checks):
-- ARGV[1]   'batch'
-- ARGV[2]   h, the number of distinct check heads
-- then h heads, each: its number of keys n, then ARGV[1 .. 4 + 3n] of one check
-- as above (mode, time, cost, min_ttl, rules); then, per check, the index of its
-- head (1-based), except when h is 1 (every check has that head; their number
-- is then #KEYS / n). KEYS holds the checks' keys one check after the other. Checks
-- of one route share a head, so the rules are sent and parsed once per batch.
-- The checks run in order, each seeing the states the previous ones wrote,
-- exactly as if they had been sent one by one at the same instant. Reply: one
-- reply per check.

local server_now = nil
local function clock(arg)
  local now = tonumber(arg)
  if now ~= nil then
    return now
  end
  if server_now == nil then
    -- Redis < 5 replicates scripts verbatim, and TIME would break that; since 5
    -- effects replication is the default (and the only mode in 7), this is a no-op.
    if redis.replicate_commands then
      redis.replicate_commands()
    end
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return server_now
end

-- A check head: ARGV[a0 + 1 ..] = mode, time, cost, min_ttl, n rules. Returns the
-- parsed head, or an error reply.
local function head(n, a0)
  local h = {
    n = n, mode = ARGV[a0 + 1], now = clock(ARGV[a0 + 2]), cost = tonumber(ARGV[a0 + 3]),
    min_ms = tonumber(ARGV[a0 + 4]), algos = {}, pa = {}, pb = {},
  }
  for i = 1, n do
    local base = a0 + 2 + 3 * i
    local algo = ALGORITHMS[ARGV[base]]
    if algo == nil then
      return nil, redis.error_reply('ratelimit: unknown algorithm ' .. tostring(ARGV[base]))
    end
    h.algos[i] = algo
    h.pa[i] = tonumber(ARGV[base + 1])
    h.pb[i] = tonumber(ARGV[base + 2])
  end
  return h
end

local function emit(out, allowed, remaining, reset_after, retry_after, delay)
  local j = #out
  out[j + 1] = allowed and 1 or 0
  out[j + 2] = remaining
  out[j + 3] = float_out(reset_after)
  out[j + 4] = float_out(retry_after)
  out[j + 5] = float_out(delay)
end

-- A hit of one rule on one key: the common case, without the tables run() builds.
local function hit_one(algo, key, now, a, b, cost, min_ms)
  local ok, state, remaining, reset_after, retry_after, ttl, delay = algo.step(algo.load(key, now), now, a, b, cost)
  if ok and cost ~= 0 then
    algo.store(key, state, ttl, min_ms, now, a, b)
  end
  return {ok and 1 or 0, remaining, float_out(reset_after), float_out(retry_after), float_out(delay)}
end

-- One check of head h on keys KEYS[k0 + 1 .. k0 + h.n].
local function run(h, k0)
  local n, now, algos, pa, pb = h.n, h.now, h.algos, h.pa, h.pb
  local cost = h.cost
  if n == 1 and h.mode == 'hit' then
    return hit_one(algos[1], KEYS[k0 + 1], now, pa[1], pb[1], cost, h.min_ms)
  end
  local states = {}
  for i = 1, n do
    states[i] = algos[i].load(KEYS[k0 + i], now)
  end
  local out = {}
  if h.mode == 'peek' then
    for i = 1, n do
      for c = 0, 1 do
        local ok, _, remaining, reset_after, retry_after, _, delay = algos[i].step(states[i], now, pa[i], pb[i], c)
        emit(out, ok, remaining, reset_after, retry_after, delay)
      end
    end
    return out
  end
  local all_ok = true
  local new_states, ttls = {}, {}
  for i = 1, n do
    local ok, state, remaining, reset_after, retry_after, ttl, delay = algos[i].step(states[i], now, pa[i], pb[i], cost)
    emit(out, ok, remaining, reset_after, retry_after, delay)
    all_ok = all_ok and ok
    new_states[i] = state
    ttls[i] = ttl
  end
  if all_ok and cost ~= 0 then
    for i = 1, n do
      algos[i].store(KEYS[k0 + i], new_states[i], ttls[i], h.min_ms, now, pa[i], pb[i])
    end
  end
  return out
end

if ARGV[1] == 'hit' and #KEYS == 1 then
  -- One check of one rule (a sync request, or a lone async one): no head table.
  local algo = ALGORITHMS[ARGV[5]]
  if algo == nil then
    return redis.error_reply('ratelimit: unknown algorithm ' .. tostring(ARGV[5]))
  end
  LEASE_TOKEN, LEASE_COST = ARGV[8], tonumber(ARGV[3])
  return hit_one(algo, KEYS[1], clock(ARGV[2]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[3]),
    tonumber(ARGV[4]))
end
if ARGV[1] ~= 'batch' then
  LEASE_TOKEN, LEASE_COST = ARGV[5 + 3 * #KEYS], tonumber(ARGV[3])
  local h, err = head(#KEYS, 0)
  if h == nil then
    return err
  end
  return run(h, 0)
end
local heads = {}
local a0 = 3
for j = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a0])
  local h, err = head(n, a0)
  if h == nil then
    return err
  end
  heads[j] = h
  a0 = a0 + 5 + 3 * n
end
local replies = {}
local k0 = 0
if a0 > #ARGV then
  local h = heads[1]
  for j = 1, #KEYS / h.n do
    replies[j] = run(h, k0)
    k0 = k0 + h.n
  end
  return replies
end
for j = a0, #ARGV do
  local h = heads[tonumber(ARGV[j])]
  replies[#replies + 1] = run(h, k0)
  k0 = k0 + h.n
end
return replies
