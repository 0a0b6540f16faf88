"""The Lua scripts: each store operation of a queue is one atomic round trip.

coredis costs ~0.4 ms per command here, so every operation that touches more
than one key runs server-side as one script, called by SHA (``EVALSHA``) and
sent again only when the server answers NOSCRIPT (a restart, ``SCRIPT
FLUSH``: see :mod:`._client`). A script is ``_PRELUDE`` (the helpers every
script shares, written once) followed by its body.

Every script receives the queue's key prefix ``P`` as ``ARGV[1]`` and one of
the queue's keys as ``KEYS[1]`` (so a cluster client routes it to the queue's
shard); the keys a script builds from ``P`` share that hash tag. Times are
integer milliseconds of the caller's wall clock (the run clock, so tests can
run in virtual time): scripts never read the server's clock.

The hash fields of a task (``P t:<id>``): ``a`` args, ``m`` metadata (absent
when none), ``s`` status, ``n`` attempts, ``r`` run_at, ``x`` max attempts
(empty: none), ``T`` timeout seconds (empty: none), ``p`` priority, ``k`` the
priority's sort prefix (16 hex digits, higher priority sorts first), ``q``
push order, ``c`` created, ``w`` owner (the worker run holding it), ``rm`` its
member in ``ready``, ``v`` result, ``e`` last error, ``f`` finished, ``u``
uniqueness key, ``N`` a typed task's name (``_kit._names.task_name_of``). A
``ready`` member is ``k .. %012x(run_at) .. %012x(q) .. id`` at score 0, so
``ZPOPMIN`` hands out priority first, then run_at, then push order, exactly
(priorities are 64-bit, beyond a double's precision). A named task's member
is also in ``ready:<name>``, so a pool's claim (``FiltersTaskNames``) merges
the first members of its names' sets instead of scanning past other names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "CLAIM_MEMBER_PREFIX",
    "DELETE",
    "EXCHANGE",
    "HEARTBEAT",
    "KILL",
    "PUSH",
    "RECOVER",
    "RESUME",
    "RETIRE",
    "SCRIPTS",
    "UPDATE",
    "Script",
]

CLAIM_MEMBER_PREFIX = 40
"""Characters before the task id in a ``ready`` member (16 + 12 + 12 hex digits)."""


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script: its name (for error messages), source and SHA1 (what EVALSHA names)."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


_PRELUDE = r"""
local P = ARGV[1]
local function tk(id) return P .. 't:' .. id end

-- One command over many arguments, in chunks (Lua's unpack has a limit).
local function bulk(command, key, list)
  for first = 1, #list, 1000 do
    local last = math.min(first + 999, #list)
    redis.call(command, key, unpack(list, first, last))
  end
end

-- The sort prefix, run_at and push order of a ready member, then the id.
local function ready_member(k, run_at, q, id)
  if run_at < 0 then run_at = 0 end
  return k .. string.format('%012x%012x', run_at, tonumber(q)) .. id
end

-- Move a task between the status indexes and record its status. Pending is
-- indexed by push order, final statuses by finish time (``score``: now);
-- Running tasks are the lease set's members, not indexed again.
local function set_status(id, key, old, new, score)
  if old and old ~= 'Running' then redis.call('ZREM', P .. 's:' .. old, id) end
  if new ~= 'Running' then
    redis.call('ZADD', P .. 's:' .. new, score or redis.call('HGET', key, 'q'), id)
  end
  redis.call('HSET', key, 's', new)
end

-- Queue a Pending task: ready when due, else scheduled by run_at. Returns 1
-- when idle workers should look again: the task is due, or it is now the
-- first scheduled one (they sleep until the first one comes due).
local function enqueue(id, key, run_at, now)
  if run_at > now then
    redis.call('ZADD', P .. 'sched', run_at, id)
    if redis.call('ZRANGE', P .. 'sched', 0, 0)[1] == id then return 1 end
    return 0
  end
  local f = redis.call('HMGET', key, 'k', 'q', 'N')
  local m = ready_member(f[1], run_at, f[2], id)
  redis.call('ZADD', P .. 'ready', 0, m)
  if f[3] then redis.call('ZADD', P .. 'ready:' .. f[3], 0, m) end
  redis.call('HSET', key, 'rm', m)
  return 1
end

-- Take a task out of ready/sched, wherever it waits.
local function unqueue(id, key)
  local f = redis.call('HMGET', key, 'rm', 'N')
  local m = f[1]
  if m then
    redis.call('ZREM', P .. 'ready', m)
    if f[2] then redis.call('ZREM', P .. 'ready:' .. f[2], m) end
    redis.call('HDEL', key, 'rm')
  end
  redis.call('ZREM', P .. 'sched', id)
end

-- Forget a task's lease and owner.
local function unlease(id, key)
  redis.call('ZREM', P .. 'lease', id)
  local w = redis.call('HGET', key, 'w')
  if w then
    redis.call('SREM', P .. 'h:' .. w, id)
    redis.call('HDEL', key, 'w')
  end
end

-- Release the uniqueness key a task holds.
local function unclaim_unique(id, key)
  local u = redis.call('HGET', key, 'u')
  if u and redis.call('GET', P .. 'u:' .. u) == id then
    redis.call('DEL', P .. 'u:' .. u)
  end
end

-- Record a final status (Done with a value, Failed/Killed with an error).
local function finish(id, key, old, status, now, value, err)
  set_status(id, key, old, status, now)
  if value then redis.call('HSET', key, 'v', value) end
  if err then redis.call('HSET', key, 'e', err) end
  redis.call('HSET', key, 'f', now)
  unclaim_unique(id, key)
end

-- Leave up to 64 wake markers for idle workers (BLPOP on P wake).
local function wake(n)
  if n > 0 then
    if n > 64 then n = 64 end
    local marks = {}
    for i = 1, n do marks[i] = '1' end
    redis.call('LPUSH', P .. 'wake', unpack(marks))
    redis.call('LTRIM', P .. 'wake', 0, 63)
  end
end

-- Delete a task and every index entry naming it.
local function forget(id)
  local key = tk(id)
  local s = redis.call('HGET', key, 's')
  if s and s ~= 'Running' then redis.call('ZREM', P .. 's:' .. s, id) end
  unqueue(id, key)
  unlease(id, key)
  unclaim_unique(id, key)
  redis.call('ZREM', P .. 'all', id)
  return redis.call('DEL', key)
end

-- When the earliest scheduled task comes due (ms), or false.
local function next_due()
  local first = redis.call('ZRANGE', P .. 'sched', 0, 0, 'WITHSCORES')
  if first[2] then return first[2] end
  return false
end
"""


def _script(name: str, body: str) -> Script:
    return Script(name, _PRELUDE + body)


PUSH = _script(
    "push",
    r"""
-- ARGV: P, now, then 11 fields per task: id, args, meta ('' none), run_at,
-- max attempts ('' none), timeout ('' none), priority, sort prefix,
-- uniqueness key ('' none), attempts, task name ('' none).
-- Returns, per task, the id stored or the id that already holds it.
local now = tonumber(ARGV[2])
local out = {}
local due = 0
local all, pending, ready = {}, {}, {}
-- Push order: one INCRBY for the whole batch (a duplicate leaves a gap).
local seq = redis.call('INCRBY', P .. 'seq', (#ARGV - 2) / 11) - (#ARGV - 2) / 11
local named = {}
for i = 3, #ARGV, 11 do
  local id = ARGV[i]
  local key = tk(id)
  local result = id
  seq = seq + 1
  if redis.call('EXISTS', key) == 0 and not redis.call('ZSCORE', P .. 'gone', id) then
    local unique = ARGV[i + 8]
    local holder = false
    if unique ~= '' then
      holder = redis.call('GET', P .. 'u:' .. unique)
      if holder then
        local s = redis.call('HGET', tk(holder), 's')
        if s ~= 'Pending' and s ~= 'Running' then holder = false end
      end
    end
    if holder then
      result = holder
    else
      local run_at = tonumber(ARGV[i + 3])
      local member = ''
      if run_at <= now then member = ready_member(ARGV[i + 7], run_at, seq, id) end
      redis.call('HSET', key, 'a', ARGV[i + 1], 'r', run_at, 'x', ARGV[i + 4],
        'T', ARGV[i + 5], 'p', ARGV[i + 6], 'k', ARGV[i + 7], 'n', ARGV[i + 9],
        'q', seq, 'c', now, 's', 'Pending', 'rm', member)
      if ARGV[i + 2] ~= '' then redis.call('HSET', key, 'm', ARGV[i + 2]) end
      if unique ~= '' then
        redis.call('HSET', key, 'u', unique)
        redis.call('SET', P .. 'u:' .. unique, id)
      end
      local name = ARGV[i + 10]
      if name ~= '' then redis.call('HSET', key, 'N', name) end
      all[#all + 1] = seq
      all[#all + 1] = id
      pending[#pending + 1] = seq
      pending[#pending + 1] = id
      if member == '' then
        due = due + enqueue(id, key, run_at, now)
      else
        ready[#ready + 1] = 0
        ready[#ready + 1] = member
        if name ~= '' then
          local list = named[name]
          if not list then list = {}; named[name] = list end
          list[#list + 1] = 0
          list[#list + 1] = member
        end
        due = due + 1
      end
    end
  end
  out[#out + 1] = result
end
bulk('ZADD', P .. 'all', all)
bulk('ZADD', P .. 's:Pending', pending)
bulk('ZADD', P .. 'ready', ready)
for name, list in pairs(named) do bulk('ZADD', P .. 'ready:' .. name, list) end
wake(due)
return out
""",
)

EXCHANGE = _script(
    "exchange",
    r"""
-- ARGV: P, owner, now, lease (ms), limit, promote limit, the count c of task
-- names to claim (0: every task), the c names, then 5 fields per
-- settlement: id, attempt, kind (D done, F failed, K killed, R retry,
-- B hand-back), payload (result or error; '' none), run_at (retry).
-- Settlements apply only while the task is Running under this owner and
-- attempt (the fence). Then claims up to limit due tasks. The index updates
-- of a batch go out as one command each.
-- Returns {settled, next due or false, id, args, meta, attempts, run_at, max,
-- timeout, priority, ...}.
local owner = ARGV[2]
local now = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local promote = tonumber(ARGV[6])
local names = tonumber(ARGV[7])
local held = P .. 'h:' .. owner
local FINAL = {D = 'Done', F = 'Failed', K = 'Killed'}
local settled = 0
local due = 0
local gone = {}
local finished = {Done = {}, Failed = {}, Killed = {}}
for i = 8 + names, #ARGV, 5 do
  local id = ARGV[i]
  local key = tk(id)
  local f = redis.call('HMGET', key, 's', 'n', 'w', 'q', 'u')
  if f[1] == 'Running' and f[2] == ARGV[i + 1] and f[3] == owner then
    local kind = ARGV[i + 2]
    local payload = ARGV[i + 3]
    local status = FINAL[kind]
    gone[#gone + 1] = id
    if status then
      if kind == 'D' then
        redis.call('HSET', key, 's', status, 'v', payload, 'f', now)
      else
        redis.call('HSET', key, 's', status, 'e', payload, 'f', now)
      end
      local list = finished[status]
      list[#list + 1] = now
      list[#list + 1] = id
      if f[5] and redis.call('GET', P .. 'u:' .. f[5]) == id then
        redis.call('DEL', P .. 'u:' .. f[5])
      end
    else
      local run_at
      if kind == 'B' then
        redis.call('HINCRBY', key, 'n', -1)
        run_at = tonumber(redis.call('HGET', key, 'r'))
      else
        run_at = tonumber(ARGV[i + 4])
        redis.call('HSET', key, 'r', run_at, 'e', payload)
      end
      set_status(id, key, false, 'Pending', f[4])
      due = due + enqueue(id, key, run_at, now)
    end
    settled = settled + 1
  end
end
bulk('ZREM', P .. 'lease', gone)
bulk('SREM', held, gone)
for status, list in pairs(finished) do bulk('ZADD', P .. 's:' .. status, list) end
wake(due)
local out = {settled, false}
if limit > 0 then
  local ripe = redis.call('ZRANGEBYSCORE', P .. 'sched', '-inf', now, 'LIMIT', 0, promote)
  for _, id in ipairs(ripe) do
    redis.call('ZREM', P .. 'sched', id)
    local key = tk(id)
    local r = redis.call('HGET', key, 'r')
    if r then enqueue(id, key, tonumber(r), now) end
  end
  local members = {}
  if names == 0 then
    local popped = redis.call('ZPOPMIN', P .. 'ready', limit)
    for j = 1, #popped, 2 do members[#members + 1] = popped[j] end
  else
    -- The first members of each name's set, merged in claim order (members
    -- compare as strings: priority, run_at, push order).
    for j = 8, 7 + names do
      for _, m in ipairs(redis.call('ZRANGE', P .. 'ready:' .. ARGV[j], 0, limit - 1)) do
        members[#members + 1] = m
      end
    end
    table.sort(members)
    for j = limit + 1, #members do members[j] = nil end
    bulk('ZREM', P .. 'ready', members)
  end
  local deadline = now + lease
  local leases, pending = {}, {}
  for _, member in ipairs(members) do
    local id = string.sub(member, 41)
    local key = tk(id)
    local f = redis.call('HMGET', key, 's', 'a', 'm', 'r', 'x', 'T', 'p', 'q', 'n', 'N')
    if f[10] then redis.call('ZREM', P .. 'ready:' .. f[10], member) end
    if f[1] == 'Pending' then
      local n = tonumber(f[9]) + 1
      -- 'rm' is left stale: the member is gone from ready, and the next
      -- enqueue writes a new one.
      redis.call('HSET', key, 's', 'Running', 'w', owner, 'n', n)
      leases[#leases + 1] = deadline
      leases[#leases + 1] = id
      pending[#pending + 1] = id
      local k = #out
      out[k + 1] = id
      out[k + 2] = f[2]
      out[k + 3] = f[3]
      out[k + 4] = n
      out[k + 5] = f[4]
      out[k + 6] = f[5]
      out[k + 7] = f[6]
      out[k + 8] = f[7]
    end
  end
  bulk('ZADD', P .. 'lease', leases)
  bulk('SADD', held, pending)
  bulk('ZREM', P .. 's:Pending', pending)
end
out[2] = next_due()
return out
""",
)

HEARTBEAT = _script(
    "heartbeat",
    r"""
-- ARGV: P, owner, now, lease (ms), name, host, pid, started (ms), keep (ms).
-- Extends the lease of every task the worker still holds (ZADD XX GT: never
-- resurrects a reaped task, never shortens), records the worker (its record
-- expires after keep ms without a beat). Returns how many leases it extended.
local owner = ARGV[2]
local now = tonumber(ARGV[3])
local deadline = now + tonumber(ARGV[4])
local keep = tonumber(ARGV[9])
local held = P .. 'h:' .. owner
local extended = 0
for _, id in ipairs(redis.call('SMEMBERS', held)) do
  local f = redis.call('HMGET', tk(id), 's', 'w')
  if f[1] == 'Running' and f[2] == owner then
    redis.call('ZADD', P .. 'lease', 'XX', 'GT', deadline, id)
    extended = extended + 1
  else
    redis.call('SREM', held, id)
  end
end
local record = P .. 'w:' .. owner
redis.call('HSET', record, 'name', ARGV[5], 'host', ARGV[6], 'pid', ARGV[7],
  'started', ARGV[8], 'seen', now)
redis.call('PEXPIRE', record, keep)
redis.call('ZADD', P .. 'workers', now, owner)
redis.call('ZREMRANGEBYSCORE', P .. 'workers', '-inf', now - keep)
return extended
""",
)

RETIRE = _script(
    "retire",
    r"""
-- ARGV: P, owner. Forgets a worker run that ended cleanly.
redis.call('DEL', P .. 'w:' .. ARGV[2])
redis.call('ZREM', P .. 'workers', ARGV[2])
return 1
""",
)

RECOVER = _script(
    "recover",
    r"""
-- ARGV: P, now, limit, owners ('' none; else comma-separated worker ids whose
-- tasks to take back at once), expire before ('' none; a time in ms, or
-- '+inf'), expire limit, forget gone ids before ('' never; ms).
-- Re-queues up to limit Running tasks whose lease expired before now, and
-- every task the given (dead) owners hold, the lost execution counted:
-- Failed when no attempts are left. Then deletes up to expire limit tasks
-- finished before the expiry time (retention). Returns {re-queued, deleted}.
local now = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', P .. 'lease', '-inf', '(' .. now, 'LIMIT', 0, limit)
for owner in string.gmatch(ARGV[4], '[^,]+') do
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'h:' .. owner)) do
    ids[#ids + 1] = id
  end
end
local recovered = 0
local due = 0
for _, id in ipairs(ids) do
  local key = tk(id)
  local f = redis.call('HMGET', key, 's', 'n', 'x')
  unlease(id, key)
  if f[1] == 'Running' then
    local n = tonumber(f[2])
    local most = tonumber(f[3])
    local why = 'lease expired: the worker of attempt ' .. n .. ' is gone'
    if most and n >= most then
      finish(id, key, 'Running', 'Failed', now, false, why)
    else
      redis.call('HSET', key, 'e', why)
      set_status(id, key, 'Running', 'Pending')
      due = due + enqueue(id, key, now, now)
    end
    recovered = recovered + 1
  end
end
wake(due)
local deleted = 0
-- Ids of deleted finished tasks stay known (``gone``) for another retention
-- (ARGV[7], ms; '' keeps them) and at most the last 100,000: a push of one
-- stores nothing, so a periodic tick once run is never run again.
if ARGV[7] ~= '' then
  redis.call('ZREMRANGEBYSCORE', P .. 'gone', '-inf', '(' .. ARGV[7])
end
if ARGV[5] ~= '' then
  local most = tonumber(ARGV[6])
  for _, status in ipairs({'Done', 'Failed', 'Killed'}) do
    if deleted < most then
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 's:' .. status, '-inf', ARGV[5],
          'LIMIT', 0, most - deleted)) do
        forget(id)
        redis.call('ZADD', P .. 'gone', now, id)
        deleted = deleted + 1
      end
    end
  end
end
if deleted > 0 then redis.call('ZREMRANGEBYRANK', P .. 'gone', 0, -100001) end
return {recovered, deleted}
""",
)

UPDATE = _script(
    "update",
    r"""
-- ARGV: P, now, id, status, attempts, run_at, max ('' none), timeout ('' none),
-- priority, sort prefix, meta ('' none), mode ('update' or 'reschedule').
-- update: stores the parts of a task that is not Running (Running is its
-- worker's); reschedule: queues a Pending, final or Running-but-abandoned
-- task again at run_at, attempts kept. Returns 1, 0 (unknown id) or -1 (Running).
local now = tonumber(ARGV[2])
local id = ARGV[3]
local key = tk(id)
local old = redis.call('HGET', key, 's')
if not old then return 0 end
if old == 'Running' and ARGV[12] == 'update' then return -1 end
unqueue(id, key)
unlease(id, key)
local new = ARGV[4]
local run_at = tonumber(ARGV[6])
if ARGV[12] == 'update' then
  redis.call('HSET', key, 'n', ARGV[5], 'x', ARGV[7], 'T', ARGV[8], 'p', ARGV[9],
    'k', ARGV[10])
  if ARGV[11] == '' then
    redis.call('HDEL', key, 'm')
  else
    redis.call('HSET', key, 'm', ARGV[11])
  end
end
redis.call('HSET', key, 'r', run_at)
if old == 'Done' or old == 'Failed' or old == 'Killed' then
  redis.call('HDEL', key, 'f')
end
if new == 'Pending' then
  redis.call('HDEL', key, 'v')
  set_status(id, key, old, 'Pending')
  local u = redis.call('HGET', key, 'u')
  if u and not redis.call('GET', P .. 'u:' .. u) then redis.call('SET', P .. 'u:' .. u, id) end
  wake(enqueue(id, key, run_at, now))
else
  finish(id, key, old, new, now, false, false)
end
return 1
""",
)

RESUME = _script(
    "resume",
    r"""
-- ARGV: P, now, id. Makes a Failed or Killed task Pending again with a fresh
-- attempt budget, due now. Returns 1, or 0 when it is not Failed or Killed.
local now = tonumber(ARGV[2])
local id = ARGV[3]
local key = tk(id)
local old = redis.call('HGET', key, 's')
if old ~= 'Failed' and old ~= 'Killed' then return 0 end
redis.call('HDEL', key, 'f', 'e', 'v')
redis.call('HSET', key, 'n', 0, 'r', now)
set_status(id, key, old, 'Pending')
local u = redis.call('HGET', key, 'u')
if u and not redis.call('GET', P .. 'u:' .. u) then redis.call('SET', P .. 'u:' .. u, id) end
wake(enqueue(id, key, now, now))
return 1
""",
)

DELETE = _script(
    "delete",
    r"""
-- ARGV: P, id. Deletes a task that is not Running, or forgets the id of one
-- that expired (it may be pushed again). Returns 1, 0 (unknown) or -1 (Running).
local id = ARGV[2]
local s = redis.call('HGET', tk(id), 's')
if not s then return redis.call('ZREM', P .. 'gone', id) end
if s == 'Running' then return -1 end
forget(id)
redis.call('ZREM', P .. 'gone', id)
return 1
""",
)

KILL = _script(
    "kill",
    r"""
-- ARGV: P, now, id, reason. Makes a Pending or Running task Killed (a Running
-- task's worker finishes its execution, but its ack is fenced off: the task is
-- no longer Running). Returns 1, or 0 for an unknown id or a finished task.
local now = tonumber(ARGV[2])
local id = ARGV[3]
local key = tk(id)
local old = redis.call('HGET', key, 's')
if old ~= 'Pending' and old ~= 'Running' then return 0 end
unqueue(id, key)
unlease(id, key)
redis.call('HDEL', key, 'v')
finish(id, key, old, 'Killed', now, false, ARGV[4])
return 1
""",
)

SCRIPTS = (PUSH, EXCHANGE, HEARTBEAT, RETIRE, RECOVER, UPDATE, RESUME, DELETE, KILL)
