"""The Lua scripts of the Redis store: each mutation is one script, so it runs atomically.

Every script takes the session's five keys (``KEYS[1]`` the metadata hash, ``KEYS[2]`` the list
of items, ``KEYS[3]`` the SDK's counter; ours: ``KEYS[4]`` a hash of per-session state values,
``KEYS[5]`` a list of archived rows, each a JSON object; ``KEYS[6]`` a hash of provenance, the
SHA-1 of a row's stored bytes -> ``seconds.micros NUL tag JSON``; ``KEYS[7]`` a hash of the runs'
rows, ``run_id NUL position`` -> ``digest NUL SHA-1 of the row's bytes``) and first checks their
types, so a key
held by another data type (a colliding session id, another application) fails the script before
it writes.
Write scripts start with a ``#!lua`` shebang: Redis 7 then refuses the whole script while the
server is out of memory, instead of failing it halfway through.
"""

from __future__ import annotations

__all__ = [
    "APPEND",
    "APPEND_TAGGED",
    "ARCHIVE",
    "CLEAR",
    "READ",
    "RECORDS",
    "RESTORE",
    "SPLICE",
    "STATE",
    "TAIL",
]

# Reads return values packed into two strings (their byte lengths, comma-separated, and their
# concatenation): redis-py parses a reply element by element in Python, ~20 us each, so one
# string for twenty values makes a read of recent history several times faster.
_PACK = """
local function pack(values)
  local lens = {}
  for i = 1, #values do lens[i] = #values[i] end
  return table.concat(lens, ','), table.concat(values)
end
"""

READ = (
    "#!lua flags=no-writes\n"
    + _PACK
    + """
-- KEYS: the list. ARGV: the first index to return (0 for all, -n for the newest n)
local lens, blob = pack(redis.call('LRANGE', KEYS[1], ARGV[1], -1))
return {lens, blob}
"""
)
"""The newest values of the list (all of them from index 0), packed."""

_TYPES = """
local function wrong(key, want)
  local kind = redis.call('TYPE', key)['ok']
  return kind ~= 'none' and kind ~= want
end
-- KEYS[3] is not checked: it is only expired or deleted when it holds a string (the key may be
-- the record of the session whose id ends in ':counter').
local counter = redis.call('TYPE', KEYS[3])['ok'] == 'string'
if wrong(KEYS[1], 'hash') or wrong(KEYS[2], 'list') or wrong(KEYS[4], 'hash')
    or wrong(KEYS[5], 'list') or wrong(KEYS[6], 'hash') or wrong(KEYS[7], 'hash') then
  return redis.error_reply('WRONGTYPE a session key holds another kind of value')
end
"""

_PUSH = """
local function push(key, values, first, last)
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(values, i, math.min(i + 999, last)))
  end
end
local function touch(session_id, ttl_ms)
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'session_id', session_id)
  redis.call('HSETNX', KEYS[1], 'created_at', t[1])
  redis.call('HSET', KEYS[1], 'updated_at', t[1])
  if ttl_ms ~= '' then
    local at = string.format('%.0f',
      tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ttl_ms))
    for _, i in ipairs({1, 2, 4, 5, 6, 7}) do redis.call('PEXPIREAT', KEYS[i], at) end
    if counter then redis.call('PEXPIREAT', KEYS[3], at) end
  end
end
"""

APPEND = (
    "#!lua\n"
    + _TYPES
    + _PUSH
    + """
-- ARGV: session_id, ttl_ms ('' for none), texts...
push(KEYS[2], ARGV, 3, #ARGV)
touch(ARGV[1], ARGV[2])
return {redis.call('LLEN', KEYS[2]), redis.call('HGET', KEYS[1], 'created_at')}
"""
)
"""Append texts after the newest item, create the session record, refresh the TTL.

Returns the list's new length and the record's ``created_at``.
"""

APPEND_TAGGED = (
    "#!lua\n"
    + _TYPES
    + _PUSH
    + """
-- ARGV: session_id, ttl_ms ('' for none), n, then n rows: text, run key, digest, tag JSON
local n = tonumber(ARGV[3])
local present = nil
local function stored(sha)
  if not present then
    present = {}
    for _, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do present[redis.sha1hex(v)] = true end
  end
  return present[sha]
end
local rows = {}
for k = 1, n do
  local i = 4 + (k - 1) * 4
  local old = redis.call('HGET', KEYS[7], ARGV[i + 1])
  local skip = false
  if old then
    local sep = string.find(old, '\\0', 1, true)
    -- a run's row counts as stored while a row with its bytes is in the list (a pop takes it)
    if sep and stored(string.sub(old, sep + 1)) then
      if string.sub(old, 1, sep - 1) ~= ARGV[i + 2] then return {-1, k} end
      skip = true
    end
  end
  if not skip then rows[#rows + 1] = i end
end
if #rows == 0 then return {0} end
local t = redis.call('TIME')
local at = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local texts = {}
for _, i in ipairs(rows) do
  local sha = redis.sha1hex(ARGV[i])
  texts[#texts + 1] = ARGV[i]
  redis.call('HSET', KEYS[7], ARGV[i + 1], ARGV[i + 2] .. '\\0' .. sha)
  redis.call('HSET', KEYS[6], sha, at .. '\\0' .. ARGV[i + 3])
end
push(KEYS[2], texts, 1, #texts)
touch(ARGV[1], ARGV[2])
return {#texts, redis.call('LLEN', KEYS[2]), redis.call('HGET', KEYS[1], 'created_at'),
        texts[#texts]}
"""
)
"""Append the rows of a tagged batch not stored before, with their provenance, atomically.

Returns ``{-1, k}`` if row ``k`` (1-based) reuses a stored run key with another digest (then
nothing was written), ``{0}`` if every row was stored before, else the count stored, the list's
new length, the record's ``created_at`` and the newest value.
"""

RECORDS = (
    "#!lua flags=no-writes\n"
    + _TYPES
    + _PACK
    + """
-- ARGV: the first index to return (0 for all, -n for the newest n)
local values = redis.call('LRANGE', KEYS[2], ARGV[1], -1)
local tags = {}
for i = 1, #values do
  tags[i] = redis.call('HGET', KEYS[6], redis.sha1hex(values[i])) or ''
end
local lens, blob = pack(values)
local tlens, tblob = pack(tags)
return {lens, blob, tlens, tblob}
"""
)
"""The newest values of the list and each one's provenance ('' for none), packed."""

TAIL = (
    "#!lua flags=no-writes\n"
    + _TYPES
    + _PACK
    + """
-- ARGV: n (how many newest items; 0 for all)
local n = tonumber(ARGV[1])
local total = redis.call('LLEN', KEYS[2])
local first = 0
if n > 0 and n < total then first = total - n end
local lens, blob = pack(redis.call('LRANGE', KEYS[2], first, -1))
return {total, lens, blob, redis.call('HGET', KEYS[1], 'created_at')}
"""
)
"""The list's length, its newest ``n`` items (packed), and the record's ``created_at``."""

_SWAP = """
local function swap(start, out)
  local deadline = redis.call('PEXPIRETIME', KEYS[2])
  if start <= 1 then redis.call('DEL', KEYS[2])
  else redis.call('LTRIM', KEYS[2], 0, start - 2) end
  if #out > 0 then
    push(KEYS[2], out, 1, #out)
    if deadline > 0 then redis.call('PEXPIREAT', KEYS[2], deadline) end
  end
end
"""

_ARCHIVE = """
local function batch_of(entry)
  local ok, row = pcall(cjson.decode, entry)
  if ok and type(row) == 'table' then return tonumber(row.batch) end
  return nil
end
-- ARGV[i]: kind ('' for none), ARGV[i + 1]: a batch to drop ('' for none), ARGV[i + 2]: how
-- many of the texts that follow were items (the rest are the summary that replaced them)
local function archive(i)
  local kind, drop = ARGV[i], ARGV[i + 1]
  if kind == '' and drop == '' then return end
  local rows = redis.call('LRANGE', KEYS[5], 0, -1)
  local newest = 0
  if drop ~= '' then
    local kept = {}
    for _, entry in ipairs(rows) do
      if batch_of(entry) ~= tonumber(drop) then kept[#kept + 1] = entry end
    end
    redis.call('DEL', KEYS[5])
    if #kept > 0 then push(KEYS[5], kept, 1, #kept) end
    rows = kept
  end
  if kind == '' then return end
  for _, entry in ipairs(rows) do newest = math.max(newest, batch_of(entry) or 0) end
  local at = tonumber(redis.call('TIME')[1])
  local items = tonumber(ARGV[i + 2])
  local entries = {}
  for j = i + 3, #ARGV do
    local role = 'item'
    if j > i + 2 + items then role = 'summary' end
    entries[#entries + 1] = cjson.encode(
      {batch = newest + 1, kind = kind, role = role, text = ARGV[j], at = at})
  end
  if #entries > 0 then push(KEYS[5], entries, 1, #entries) end
  local deadline = redis.call('PEXPIRETIME', KEYS[2])
  if deadline > 0 then redis.call('PEXPIREAT', KEYS[5], deadline) end
end
"""

ARCHIVE = (
    "#!lua\n"
    + _TYPES
    + _PUSH
    + _ARCHIVE
    + """
archive(1)
return 1
"""
)
"""Add (or drop) one archive batch: the arguments of the archive part of ``SPLICE``."""

SPLICE = (
    "#!lua\n"
    + _TYPES
    + _PUSH
    + _SWAP
    + _ARCHIVE
    + """
-- ARGV: total, start, m, sha1 of items start..total (m of them), ttl_ms, refresh,
--       session_id, n, then n pairs: 'k' position (keep that item), 't' text (new item) or
--       'r<position>' text (that item rewritten: its provenance goes with it), then the
--       archive's arguments (see archive())
local total = tonumber(ARGV[1])
local start = tonumber(ARGV[2])
local m = tonumber(ARGV[3])
if redis.call('LLEN', KEYS[2]) ~= total then return 0 end
local old = {}
if m > 0 then old = redis.call('LRANGE', KEYS[2], start - 1, -1) end
if #old ~= m then return 0 end
for i = 1, m do
  if redis.sha1hex(old[i]) ~= ARGV[3 + i] then return 0 end
end
local out = {}
local moved = nil
local i = m + 8
for _ = 1, tonumber(ARGV[m + 7]) do
  local op = ARGV[i]
  if op == 'k' then out[#out + 1] = old[tonumber(ARGV[i + 1]) - start + 1]
  else
    out[#out + 1] = ARGV[i + 1]
    if string.sub(op, 1, 1) == 'r' then
      local was = redis.sha1hex(old[tonumber(string.sub(op, 2)) - start + 1])
      local tag = redis.call('HGET', KEYS[6], was)
      if tag then
        moved = moved or {}
        moved[was] = redis.sha1hex(ARGV[i + 1])
        redis.call('HSET', KEYS[6], moved[was], tag)
      end
    end
  end
  i = i + 2
end
if moved then  -- the runs' rows now have the new bytes
  local runs = redis.call('HGETALL', KEYS[7])
  for j = 1, #runs, 2 do
    local sep = string.find(runs[j + 1], '\0', 1, true)
    local now = sep and moved[string.sub(runs[j + 1], sep + 1)]
    if now then redis.call('HSET', KEYS[7], runs[j], string.sub(runs[j + 1], 1, sep) .. now) end
  end
end
swap(start, out)
archive(i)
if ARGV[m + 5] == '1' then touch(ARGV[m + 6], ARGV[m + 4]) end
return {redis.call('LLEN', KEYS[2]), redis.call('LINDEX', KEYS[2], -1),
        redis.call('HGET', KEYS[1], 'created_at')}
"""
)
"""Replace the items from ``start`` to the end if they are still exactly the ones read.

Returns 0 if they are not; else the list's new length, its newest value and the record's
``created_at`` (so that the next pop of the same session can go straight to this script).
"""

RESTORE = (
    "#!lua\n"
    + _TYPES
    + _PUSH
    + _SWAP
    + """
-- ARGV: created_at the pop saw ('' for none), then pairs: position, text (ascending)
local seen = ARGV[1]
if seen ~= '' and redis.call('HGET', KEYS[1], 'created_at') ~= seen then return 0 end
local total = redis.call('LLEN', KEYS[2])
local start = math.min(tonumber(ARGV[2]), total + 1)
local rest = {}
if start <= total then rest = redis.call('LRANGE', KEYS[2], start - 1, -1) end
local out = {}
local r, t, pos = 2, 1, start
while r <= #ARGV or t <= #rest do
  if r <= #ARGV and (t > #rest or tonumber(ARGV[r]) <= pos) then
    out[#out + 1] = ARGV[r + 1]
    r = r + 2
  else
    out[#out + 1] = rest[t]
    t = t + 1
  end
  pos = pos + 1
end
swap(start, out)
return 1
"""
)
"""Put popped items back at their positions, unless the session was cleared since."""

CLEAR = (
    "#!lua\n"
    + _TYPES
    + """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
if counter then redis.call('DEL', KEYS[3]) end
return 1
"""
)
"""Delete the session's keys, its state included."""

STATE = (
    "#!lua\n"
    + _TYPES
    + """
-- ARGV: name, check ('1': only if the value is ARGV[3], '' meaning none), expected,
--       new value ('' with ARGV[5] == '0' deletes), has new ('1'/'0')
local name = ARGV[1]
if ARGV[2] == '1' then
  local current = redis.call('HGET', KEYS[4], name)
  if ARGV[3] == '' then
    if current then return 0 end
  elseif current ~= ARGV[3] then return 0 end
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[4], name, ARGV[4])
  local deadline = redis.call('PEXPIRETIME', KEYS[2])
  if deadline > 0 then redis.call('PEXPIREAT', KEYS[4], deadline) end
else
  redis.call('HDEL', KEYS[4], name)
end
return 1
"""
)
"""Set or delete one state value (if it still is what was read), expiring with the history."""
