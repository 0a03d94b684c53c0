"""The Lua scripts of RedisFlagStore: the one place the ordering rules of _rules.settle are restated.

Redis runs a script atomically, so one script applies one event to one feature: it reads everything it needs and
decides before its first write (a script that fails halfway is not rolled back). Keys are fixed-width strings
(26 characters of UTC time, then the event id) compared byte by byte: never as Lua numbers (doubles) and never
with Lua's ``<`` on strings, which follows the server's collation locale.

A feature's hash holds ``name``, ``name_key``, ``tomb``, ``floor``, ``newest`` (keys), ``t:TARGET`` (the target's
key, a newline, then its encoded state; nothing after the newline for a tombstone) and ``r:EVENT_ID`` for each
recent event id of the feature (empty, or the target whose tombstone that event left). The feature's recent ids
list keeps their order; the environment's names hash maps a name to ``FEATURE_ID KEY`` lines; its load hash holds
the key of its newest environment document (``key``) and the features it had (``f:ID``).
"""

from __future__ import annotations

__all__ = ["APPLY", "RELEASE"]

_COMMON = r"""
local function before(a, b)  -- a < b, byte by byte
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function split(entry)  -- an entry's key and state ('' for a tombstone)
  local at = string.find(entry, '\n', 1, true)
  return string.sub(entry, 1, at - 1), string.sub(entry, at + 1)
end
"""

# KEYS: the feature's hash, its recent ids list, the environment's names hash, its newest load's hash.
# ARGV: event id, key, feature id, name, target, '1' for a deletion else '0', the new state, the window size.
# Returns 1 when what the cache shows changed, else 0.
APPLY = (
    _COMMON
    + r"""
local fkey, qkey, nkey, lkey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local eid, key, fid, name, target = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local deleting, new, remembered = ARGV[6] == '1', ARGV[7], tonumber(ARGV[8])

if redis.call('HEXISTS', fkey, 'r:' .. eid) == 1 then return 0 end  -- applied already

-- Everything read and decided first; written at the end.
local meta = redis.call('HMGET', fkey, 'name', 'name_key', 'tomb', 'floor', 'newest')
local held_name, name_key, tomb, floor, newest = meta[1], meta[2], meta[3], meta[4], meta[5]
local sets, dels = {}, {}
local function set(field, value) sets[#sets + 1] = field; sets[#sets + 1] = value end
local whole = deleting and target == 'd'
local current = false
if not whole then current = redis.call('HGET', fkey, 't:' .. target) end

-- The oldest recent id leaves the window: an identity-override tombstone it left folds into the floor.
local pop = false
if redis.call('LLEN', qkey) >= remembered then
  pop = redis.call('LINDEX', qkey, 0)
  local carried = redis.call('HGET', fkey, 'r:' .. pop)
  dels[#dels + 1] = 'r:' .. pop
  if carried and carried ~= '' then
    local entry = redis.call('HGET', fkey, 't:' .. carried)
    if entry then
      local k, s = split(entry)
      if s == '' and string.sub(k, 27) == pop then
        dels[#dels + 1] = 't:' .. carried
        if carried == target then current = false end
        if not floor or before(floor, k) then floor = k; set('floor', k) end
      end
    end
  end
end

-- The name follows the feature's newest event.
local names = {}
local function owners(of)
  local list = {}
  local text = redis.call('HGET', nkey, of)
  if text then
    for line in string.gmatch(text, '[^\n]+') do
      local at = string.find(line, ' ', 1, true)
      list[string.sub(line, 1, at - 1)] = string.sub(line, at + 1)
    end
  end
  return list
end
local function join(list)
  local lines = {}
  for owner, k in pairs(list) do lines[#lines + 1] = owner .. ' ' .. k end
  table.sort(lines)
  return table.concat(lines, '\n')
end
if not name_key then
  set('name', name); set('name_key', key); set('newest', key)
  newest = key
  local loaded = redis.call('HGET', lkey, 'key')
  if loaded and redis.call('HEXISTS', lkey, 'f:' .. fid) == 0 then
    -- A feature the environment's newest load lacked: deleted as of that load.
    tomb = loaded; set('tomb', loaded)
    if before(newest, loaded) then newest = loaded; set('newest', loaded) end
  end
  names[name] = owners(name)
  names[name][fid] = key
elseif before(name_key, key) then
  set('name', name); set('name_key', key)
  names[name] = owners(name)
  if held_name ~= name then
    names[held_name] = owners(held_name)
    names[held_name][fid] = nil
  end
  names[name][fid] = key
end

-- The rules (as _rules.settle).
local changed = 0
local buried = ''
if not (tomb and before(key, tomb)) then
  if before(newest, key) then set('newest', key) end
  if whole then
    set('tomb', key)
    local all = redis.call('HGETALL', fkey)
    for i = 1, #all, 2 do
      local field = all[i]
      if string.sub(field, 1, 2) == 't:' then
        local k, s = split(all[i + 1])
        if before(k, key) then
          dels[#dels + 1] = field
          if s ~= '' then changed = 1 end
        end
      end
    end
  else
    local ck, cs = false, ''
    if current then ck, cs = split(current) end
    local newer = not ck or before(ck, key)
    local live = ck and cs ~= ''
    if not newer then
      changed = 0
    elseif string.sub(target, 1, 2) == 'i:' then
      local under = floor and not before(floor, key)
      if deleting then
        if under then
          if current then dels[#dels + 1] = 't:' .. target end
        else
          set('t:' .. target, key .. '\n')
          buried = target
        end
        if live then changed = 1 end
      elseif not under then
        set('t:' .. target, key .. '\n' .. new)
        if not live or cs ~= new then changed = 1 end
      end
    elseif deleting then
      set('t:' .. target, key .. '\n')
      if live then changed = 1 end
    else
      set('t:' .. target, key .. '\n' .. new)
      if not live or cs ~= new then changed = 1 end
    end
  end
end
set('r:' .. eid, buried)

if #dels > 0 then redis.call('HDEL', fkey, unpack(dels)) end
redis.call('HSET', fkey, unpack(sets))
redis.call('RPUSH', qkey, eid)
if pop then redis.call('LPOP', qkey) end
for each, list in pairs(names) do
  local text = join(list)
  if text == '' then redis.call('HDEL', nkey, each) else redis.call('HSET', nkey, each, text) end
end
return changed
"""
)

# KEYS: the claim. ARGV: this claim's token, '1' when handled, how long a handled id is remembered (seconds).
RELEASE = r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[1], 'done', 'EX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""
