-- Merge pieces into one window, atomically. See store.go for the keys.
-- KEYS: windows index, window hash, window seqs hash, fence
-- ARGV: fence, start ms, end ms, now ms, retention, prefix, n,
--       then n × (instance, first seq, last seq, count, sum)
-- Returns {"stale", highest fence} or
--         {"ok", created, count, sum, amendments, exists, outcome…}.

local fence = tonumber(ARGV[1])
local highest = tonumber(redis.call('GET', KEYS[4]) or '0')
if fence < highest then
  return {'stale', highest}
end
if fence > highest then
  redis.call('SET', KEYS[4], fence)
end

-- Ranges are stored as "first-last,first-last" in ascending order.
local function parse(s)
  local out = {}
  if not s then return out end
  for a, b in string.gmatch(s, '(%d+)-(%d+)') do
    out[#out + 1] = {tonumber(a), tonumber(b)}
  end
  return out
end

local function format(ranges)
  local parts = {}
  for i, r in ipairs(ranges) do
    parts[i] = string.format('%d-%d', r[1], r[2])
  end
  return table.concat(parts, ',')
end

-- added, duplicate (inside a stored range) or conflict (overlaps one).
local function classify(ranges, lo, hi)
  for _, r in ipairs(ranges) do
    if r[1] <= lo and hi <= r[2] then return 'duplicate' end
    if lo <= r[2] and hi >= r[1] then return 'conflict' end
  end
  return 'added'
end

local function insert(ranges, lo, hi)
  local out, placed = {}, false
  for _, r in ipairs(ranges) do
    if not placed and hi < r[1] then
      out[#out + 1] = {lo, hi}
      placed = true
    end
    out[#out + 1] = r
  end
  if not placed then out[#out + 1] = {lo, hi} end
  -- join neighbours that touch
  local merged = {}
  for _, r in ipairs(out) do
    local last = merged[#merged]
    if last and last[2] + 1 >= r[1] then
      if r[2] > last[2] then last[2] = r[2] end
    else
      merged[#merged + 1] = {r[1], r[2]}
    end
  end
  return merged
end

local existed = redis.call('EXISTS', KEYS[2]) == 1
local n = tonumber(ARGV[7])
local outcomes = {}
local addCount, addSum = 0, 0
for i = 0, n - 1 do
  local b = 8 + i * 5
  local inst = ARGV[b]
  local lo, hi = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local ranges = parse(redis.call('HGET', KEYS[3], inst))
  local outcome = classify(ranges, lo, hi)
  if outcome == 'added' then
    redis.call('HSET', KEYS[3], inst, format(insert(ranges, lo, hi)))
    addCount = addCount + tonumber(ARGV[b + 3])
    addSum = addSum + tonumber(ARGV[b + 4])
  end
  outcomes[i + 1] = outcome
end

local created = 0
if not existed and addCount > 0 then
  created = 1
  redis.call('HSET', KEYS[2], 'start', ARGV[2], 'end', ARGV[3], 'count', addCount, 'sum', addSum,
    'amendments', 0, 'written_at', ARGV[4])
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[2])
  -- keep the newest `retention` windows
  local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
  if extra > 0 then
    local old = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
    for _, s in ipairs(old) do
      redis.call('DEL', ARGV[6] .. ':w:' .. s, ARGV[6] .. ':w:' .. s .. ':seqs')
    end
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
  end
elseif existed and addCount > 0 then
  redis.call('HINCRBY', KEYS[2], 'count', addCount)
  redis.call('HINCRBY', KEYS[2], 'sum', addSum)
  redis.call('HINCRBY', KEYS[2], 'amendments', 1)
  redis.call('HSET', KEYS[2], 'amended_at', ARGV[4])
end

local w = redis.call('HMGET', KEYS[2], 'count', 'sum', 'amendments')
local exists = 0
if w[1] then exists = 1 end
local reply = {'ok', created, tonumber(w[1] or '0'), tonumber(w[2] or '0'), tonumber(w[3] or '0'), exists}
for i, o in ipairs(outcomes) do reply[6 + i] = o end
return reply
