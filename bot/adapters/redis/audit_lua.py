"""The audit trail's Lua scripts: reading the chain's tip, writing an entry atomically with the
change it records, and trimming with the retention record.

Writes are serialised without a lock: Python prepares the entry (seq, prev_hash, stream id,
hash, head MAC) on the tip it last saw, and a script adds it and moves the head only if the
tip is still that one (compare-and-set); on a conflict the reply carries the new tip.

Atomic decisions: `audited_lua(body)` wraps another Lua script (e.g. an approval state
transition) so that it can write a prepared audit entry in the same atomic run. The decision
and its entry are then stored together or not at all.
"""

from __future__ import annotations

from bot.domain.audit_chain import GENESIS_HASH

__all__ = ["APPEND_BODY", "TIP_LUA", "TRIM_LUA", "audited_lua"]

# The chain's tip is the head, or, if the head is missing, the anchor, or genesis; `top` is
# the stream's last generated id (a new entry's id must be above it).
_TIP_LUA_FN = f"""
local function audit_tip(stream, head, anchor)
  local h = redis.call('HMGET', head, 'seq', 'hash', 'id', 'kid', 'mac')
  local seq, hash, id, kid, mac
  if h[1] then
    seq, hash, id, kid, mac = h[1], h[2] or '', h[3] or '0-0', h[4] or '', h[5] or ''
  else
    local a = redis.call('HMGET', anchor, 'seq', 'hash', 'id')
    if a[1] then
      seq, hash, id, kid, mac = a[1], a[2] or '', a[3] or '0-0', '', ''
    else
      seq, hash, id, kid, mac = '0', '{GENESIS_HASH}', '0-0', '', ''
    end
  end
  local top = '0-0'
  if redis.call('EXISTS', stream) == 1 then
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then top = info[i + 1] end
    end
  end
  return seq, hash, id, top, kid, mac
end

local function audit_id_after(a, b)
  local am, an = string.match(a, '^(%d+)-(%d+)$')
  local bm, bn = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  am, an, bm, bn = tonumber(am), tonumber(an), tonumber(bm), tonumber(bn)
  if am ~= bm then return am > bm end
  return an > bn
end
"""

# KEYS: stream, head, anchor.
TIP_LUA = (
    _TIP_LUA_FN
    + """
return {audit_tip(KEYS[1], KEYS[2], KEYS[3])}
"""
)

# Wraps a script body. The audit keys are the last three KEYS (stream, head, anchor) and the
# prepared plan is the last ARGV, so the body keeps its own KEYS[1..] and ARGV[1..].
_AUDITED_PRELUDE = (
    _TIP_LUA_FN
    + """
local AUDIT_STREAM, AUDIT_HEAD, AUDIT_ANCHOR = KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
local audit_plan = cjson.decode(ARGV[#ARGV])
local audit_written = false
do
  local seq, hash, id, top, kid, mac = audit_tip(AUDIT_STREAM, AUDIT_HEAD, AUDIT_ANCHOR)
  if seq == audit_plan.seq then
    -- One of the prepared entries is already the tip: redis-py re-sent this script after a
    -- lost reply. The body runs again (it must be idempotent) but writes no second entry.
    for status, entry in pairs(audit_plan.entries) do
      if entry.hash == hash then audit_written = status end
    end
  end
  if not audit_written and (seq ~= audit_plan.expect_seq or hash ~= audit_plan.expect_hash
      or not audit_id_after(audit_plan.id, top)) then
    return {'audit_conflict', seq, hash, id, top, kid, mac}
  end
end

-- Writes the entry prepared for `status`, if one was; at most one entry per run.
local function audit_record(status)
  if audit_written then return false end
  local entry = audit_plan.entries[status]
  if not entry then return false end
  redis.call('XADD', AUDIT_STREAM, audit_plan.id, unpack(entry.fields))
  redis.call('DEL', AUDIT_HEAD)
  redis.call('HSET', AUDIT_HEAD, unpack(entry.head))
  audit_written = status
  return true
end

local function audit_body()
"""
)

_AUDITED_EPILOGUE = """
end

local audit_reply = audit_body()
if audit_reply == nil then audit_reply = false end
return {'audit_ok', audit_reply, audit_written}
"""

# An append is an audited script whose body only records its entry.
APPEND_BODY = """
audit_record('append')
return 1
"""

# KEYS: stream, anchor. ARGV: expected current anchor seq ('' for none), new anchor's stream
# id, seq, hash, the MINID below which entries are deleted (the id right after it), then the
# anchor record's field/value pairs.
TRIM_LUA = """
local current = redis.call('HGET', KEYS[2], 'seq')
if (current or '') ~= ARGV[1] then return {'conflict'} end
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then return {'conflict'} end
local fields = found[1][2]
local seq, hash
for i = 1, #fields, 2 do
  if fields[i] == 'seq' then seq = fields[i + 1] end
  if fields[i] == 'hash' then hash = fields[i + 1] end
end
if seq ~= ARGV[3] or hash ~= ARGV[4] then return {'conflict'} end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
return {'ok', redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5])}
"""


def audited_lua(body: str) -> str:
    """A Lua script that runs `body` and may write one audit entry in the same atomic run.

    Inside `body`, `audit_record(status)` writes the entry that `run_audited()` prepared for
    `status` (nothing if none was prepared for it; at most one entry per run) and moves the
    head. The body keeps its own `KEYS[1..]` and `ARGV[1..]`: `run_audited()` appends the
    three audit keys and one plan argument after them. The body must `return` a value (it
    runs as a Lua function) and must be idempotent: if redis-py re-sends the script after a
    lost reply, it runs again but no second entry is written. Register it with
    `redis_client.register_script(audited_lua(body))`.
    """
    return _AUDITED_PRELUDE + body + _AUDITED_EPILOGUE
