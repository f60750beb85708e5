-- Keywright's shared limits: one round trip decides one request's rate limit and quota.
-- The arithmetic is core/limits.py's (the reference model); read that docstring first.
-- All times are whole microseconds, from Redis's own clock (replica clocks never matter)
-- unless ARGV[9] gives one (tests only).
--
-- KEYS[1]  the key's sliding log (sorted set: score = time, member = "time:count")
-- KEYS[2]  the key's quota (hash: credits, refilled_at, token)
-- ARGV[1]  rate requests (0: no rate limit)      ARGV[2]  rate period
-- ARGV[3]  quota limit (0: no quota)             ARGV[4]  refill every (0: never)
-- ARGV[5]  refill amount (0: the limit)          ARGV[6]  reset token
-- ARGV[7]  seed credits ("" : none)              ARGV[8]  seed refilled_at ("" : none)
-- ARGV[9]  now ("" : Redis TIME)
-- Returns {allowed, code, retry_after, rate_remaining, rate_reset, credits, refilled_at},
-- -1 standing for "none".

local function idiv(a, b)  -- exact floor division of integers held in doubles
  local q = math.floor(a / b)
  if (q + 1) * b <= a then q = q + 1 end
  if q * b > a then q = q - 1 end
  return q
end

local requests = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local every = tonumber(ARGV[4])
local amount = tonumber(ARGV[5])
if amount == 0 then amount = limit end
local token = ARGV[6]
local now
if ARGV[9] ~= "" then
  now = tonumber(ARGV[9])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local count, oldest = 0, nil
if requests > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", string.format("%.0f", now - period))
  count = redis.call("ZCARD", KEYS[1])
  if count > 0 then
    oldest = tonumber(redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")[2])
  end
end

local function rate_view(c, first)
  if requests == 0 then return -1, -1 end
  local remaining = requests - c
  if remaining < 0 then remaining = 0 end
  if first == nil then return remaining, 0 end
  return remaining, first + period - now
end

local credits, refilled_at = -1, -1
if limit > 0 then
  local state = redis.call("HMGET", KEYS[2], "credits", "refilled_at", "token")
  if state[1] == false then
    credits = limit
    if ARGV[7] ~= "" then credits = math.min(tonumber(ARGV[7]), limit) end
    refilled_at = now
    if ARGV[8] ~= "" then refilled_at = math.min(tonumber(ARGV[8]), now) end
  else
    credits = tonumber(state[1])
    refilled_at = tonumber(state[2])
    if state[3] ~= token then
      credits = limit
      refilled_at = now
    end
  end
  if every > 0 and now >= refilled_at + every then
    local times = idiv(now - refilled_at, every)
    credits = math.min(limit, credits + times * amount)
    refilled_at = refilled_at + times * every
  end
  local function save(c)
    redis.call("HSET", KEYS[2], "credits", string.format("%.0f", c),
               "refilled_at", string.format("%.0f", refilled_at), "token", token)
  end
  if credits <= 0 then
    save(credits)
    local retry = -1
    if every > 0 then retry = refilled_at + every - now end
    local remaining, reset = rate_view(count, oldest)
    return {0, "USAGE_LIMIT_REACHED", retry, remaining, reset, 0, refilled_at}
  end
  if requests > 0 and count >= requests then
    save(credits)
    local wait = oldest + period - now
    return {0, "RATE_LIMITED", wait, 0, wait, credits, refilled_at}
  end
  credits = credits - 1
  save(credits)
elseif requests > 0 and count >= requests then
  local wait = oldest + period - now
  return {0, "RATE_LIMITED", wait, 0, wait, -1, -1}
end

if requests > 0 then
  redis.call("ZADD", KEYS[1], now, string.format("%.0f:%d", now, count))
  redis.call("PEXPIRE", KEYS[1], idiv(period + 999, 1000))
  count = count + 1
  if oldest == nil then oldest = now end
end
local remaining, reset = rate_view(count, oldest)
return {1, "OK", -1, remaining, reset, credits, refilled_at}
