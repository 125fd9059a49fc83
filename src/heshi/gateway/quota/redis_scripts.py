"""The Lua scripts behind :class:`RedisAdmission`: one script per reserve, settle, usage.

Redis runs a script to completion before any other command, on any connection, from
any replica: a script's check-and-update across all scopes is therefore atomic without
locks or retries.

Keys of one scope (``B`` = ``<prefix>:quota:<kind>:<id>:``), all optional:

=========  ====  =====================================================================
``Brpm``   zset  admitted requests: member reservation id, score admission time
``Btpm``   zset  token entries in the window: member reservation id, score admission time
``Btpmv``  hash  reservation id -> tokens (reserved, then actual); ``_sum`` = their total
``Bpend``  zset  unsettled budget reservations: member reservation id, score expiry time
``Bpendv`` hash  reservation id -> reserved tokens; ``_sum`` = their total
``Bspent`` str   lifetime tokens charged (no expiry: seeded from the ledger)
=========  ====  =====================================================================

The ``_sum`` total lives in the same hash as its entries so both vanish together when
the hash's idle expiry fires; a total kept elsewhere could outlive its entries and
hold capacity forever. The expiries are garbage collection for idle scopes only:
correctness comes from the scores compared with ``now`` inside the scripts.
"""

from __future__ import annotations

# ARGV[1] window seconds, ARGV[2] now ('' = the Redis server's clock, shared by all
# replicas so their wall clocks need not agree).
_PREAMBLE = """
local window = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cutoff = now - window
-- Scores and counts are sent as text so Lua's %.14g number formatting cannot round them.
local function fmt(x) return string.format('%.6f', x) end
local function int(x) return string.format('%d', x) end

-- Remove entries scored <= upto from a zset and its value hash; return the hash's _sum.
-- Batches keep unpack() far below Lua's stack limit however many entries expire at once.
local function evict(zkey, hkey, upto)
  local freed = 0
  while true do
    local ids = redis.call('ZRANGEBYSCORE', zkey, '-inf', fmt(upto), 'LIMIT', 0, 256)
    if #ids == 0 then break end
    local vals = redis.call('HMGET', hkey, unpack(ids))
    for j = 1, #vals do freed = freed + (tonumber(vals[j]) or 0) end
    redis.call('HDEL', hkey, unpack(ids))
    redis.call('ZREM', zkey, unpack(ids))
  end
  if freed ~= 0 then redis.call('HINCRBY', hkey, '_sum', int(-freed)) end
  return tonumber(redis.call('HGET', hkey, '_sum') or '0')
end
"""

# KEYS: 6 per scope (rpm, tpm, tpmv, pend, pendv, spent).
# ARGV: 3 rid, 4 tokens, 5 reservation ttl s, 6 scope count, 7 idle expiry of window
# keys ms, 8 idle expiry of pending keys ms, then per scope 3 limits (rpm, tpm,
# budget; '' = none).
# Returns {'ok', 0, now} or {limit, scope index, now, retry_at or '', counts...}.
RESERVE = (
    _PREAMBLE
    + """
local rid = ARGV[3]
local tokens = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local n = tonumber(ARGV[6])

local function limits(i)
  local a = 8 + (i - 1) * 3
  return tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
end

-- When the window will hold at most `room` tokens: walk entries oldest first.
local function tpm_free_at(zkey, hkey, total, room)
  if room < 0 then return '' end
  local start = 0
  while true do
    local page = redis.call('ZRANGE', zkey, start, start + 63, 'WITHSCORES')
    if #page == 0 then return '' end
    local ids = {}
    for j = 1, #page, 2 do ids[#ids + 1] = page[j] end
    local vals = redis.call('HMGET', hkey, unpack(ids))
    for j = 1, #ids do
      total = total - (tonumber(vals[j]) or 0)
      if total <= room then return fmt(tonumber(page[2 * j]) + window) end
    end
    start = start + 64
  end
end

-- Check every scope before touching any: a refusal changes nothing (evicting expired
-- entries does not change what counts).
for i = 1, n do
  local k = (i - 1) * 6
  local rpm, tpm, budget = limits(i)
  if rpm then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', fmt(cutoff))
    local count = redis.call('ZCARD', KEYS[k + 1])
    if count >= rpm then
      local e = redis.call('ZRANGE', KEYS[k + 1], count - rpm, count - rpm, 'WITHSCORES')
      return {'rpm', i, fmt(now), fmt(tonumber(e[2]) + window), count, rpm}
    end
  end
  if tpm then
    local used = evict(KEYS[k + 2], KEYS[k + 3], cutoff)
    if used + tokens > tpm then
      local at = tpm_free_at(KEYS[k + 2], KEYS[k + 3], used, tpm - tokens)
      return {'tpm', i, fmt(now), at, used, tokens, tpm}
    end
  end
  if budget then
    local reserved = evict(KEYS[k + 4], KEYS[k + 5], now)
    local spent = tonumber(redis.call('GET', KEYS[k + 6]) or '0')
    if spent + reserved + tokens > budget then
      return {'budget_tokens', i, fmt(now), '', spent, reserved, tokens, budget}
    end
  end
end

local at = fmt(now)
for i = 1, n do
  local k = (i - 1) * 6
  local rpm, tpm, budget = limits(i)
  if rpm then
    redis.call('ZADD', KEYS[k + 1], at, rid)
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[7])
  end
  if tpm then
    redis.call('ZADD', KEYS[k + 2], at, rid)
    redis.call('HSET', KEYS[k + 3], rid, int(tokens))
    redis.call('HINCRBY', KEYS[k + 3], '_sum', int(tokens))
    redis.call('PEXPIRE', KEYS[k + 2], ARGV[7])
    redis.call('PEXPIRE', KEYS[k + 3], ARGV[7])
  end
  if budget then
    redis.call('ZADD', KEYS[k + 4], fmt(now + ttl), rid)
    redis.call('HSET', KEYS[k + 5], rid, int(tokens))
    redis.call('HINCRBY', KEYS[k + 5], '_sum', int(tokens))
    redis.call('PEXPIRE', KEYS[k + 4], ARGV[8])
    redis.call('PEXPIRE', KEYS[k + 5], ARGV[8])
  end
end
return {'ok', 0, at}
"""
)

# KEYS: 4 per held scope (tpmv, pend, pendv, spent).
# ARGV: 1 rid, 2 used tokens, 3 scope count, then per scope 'tb' flags ('1'/'0' each:
# holds a tpm entry, holds a budget reservation).
# Entries already gone (left the window, expired) are not recreated: a write to a
# missing hash would leave a field that no _sum accounts for.
SETTLE = """
local rid = ARGV[1]
local used = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local function int(x) return string.format('%d', x) end
for i = 1, n do
  local k = (i - 1) * 4
  local flags = ARGV[3 + i]
  if string.sub(flags, 1, 1) == '1' then
    local old = redis.call('HGET', KEYS[k + 1], rid)
    if old then
      redis.call('HSET', KEYS[k + 1], rid, int(used))
      redis.call('HINCRBY', KEYS[k + 1], '_sum', int(used - tonumber(old)))
    end
  end
  if string.sub(flags, 2, 2) == '1' then
    local held = redis.call('HGET', KEYS[k + 3], rid)
    if held then
      redis.call('HDEL', KEYS[k + 3], rid)
      redis.call('ZREM', KEYS[k + 2], rid)
      redis.call('HINCRBY', KEYS[k + 3], '_sum', int(-tonumber(held)))
    end
    -- Charged even after the reservation expired: the tokens were really used.
    -- Never INCRBY 0: that would create the counter and block restore_spent's seed.
    if used > 0 then redis.call('INCRBY', KEYS[k + 4], int(used)) end
  end
end
return 1
"""

# KEYS: 6 of one scope (as RESERVE). ARGV: 1 window, 2 now.
# Returns {requests in window, tokens in window, spent, reserved}.
USAGE = (
    _PREAMBLE
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(cutoff))
local requests = redis.call('ZCARD', KEYS[1])
local tokens = evict(KEYS[2], KEYS[3], cutoff)
local reserved = evict(KEYS[4], KEYS[5], now)
local spent = tonumber(redis.call('GET', KEYS[6]) or '0')
return {requests, tokens, spent, reserved}
"""
)
