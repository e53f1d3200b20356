//! The protocol: Lua scripts run atomically by Redis, so every decision
//! (who holds, who is next, what expired) is taken in one place on one
//! clock (Redis's `TIME`, in microseconds). One script serves a batch of
//! a process's acquires, releases and cancels (see `batch.rs`); the
//! others set up the record, renew a process's leases, and report a loss.
//!
//! Keys, all under one hash tag (`{cenote:fleet:<name>}`), so that they
//! live in one slot of a Redis Cluster:
//! - `meta` (hash): `cap`, `used` (permits held), `token` (the fencing
//!   counter), `seq` (the queue's order), and, for one TTL after the
//!   record was made again, `quarantine` (when grants may resume);
//! - `holders` (sorted set): lease id by expiry;
//! - `leases` (hash): lease id to `n:process:token` (a waiter granted by
//!   another call finds its grant here);
//! - `queue` (sorted set): waiter id by arrival (`seq`);
//! - `waiters` (hash): waiter id to `n:ttl:process`;
//! - `waiting` (sorted set): waiter id by expiry (a waiter whose process
//!   stops renewing it leaves the queue);
//! - `wake:<process>` (list): grants pushed to a process by another
//!   process's call, read with `BLMPOP` by its wake listener (a grant made
//!   by the process's own batch comes back in the batch's reply).
//!
//! A waiter's id becomes its lease's id when it is granted.

use redis::Script;

/// Functions every script shares: the clock, reclaiming expired leases and
/// waiters, granting, and serving the queue in order.
const PRELUDE: &str = r#"
local meta, holders, leases, queue, waiters, waiting =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
-- A number as an integer string (tostring would round 16 digits to 14:
-- Redis's clock in µs needs it; counts, tokens and TTLs, below 10^14,
-- are concatenated as they are).
local function int(x)
  return string.format('%.0f', x)
end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- `meta`'s fields, read once per script (one call); the counters (`used`,
-- `seq`, `token`, `due`) are changed here and written back once, by
-- `flush`. `due` is never after the soonest expiry in `holders` and
-- `waiting` (0: unknown), so that a script looks for expired entries only
-- once one may be due.
local held, resume_at, stored_cap, seq, token, due = nil, nil, nil, nil, nil, nil
local dirty = false
local function load()
  local m = redis.call('HMGET', meta, 'used', 'quarantine', 'cap', 'seq', 'token', 'due')
  held, resume_at = tonumber(m[1] or '0'), tonumber(m[2] or '0')
  stored_cap = m[3] and tonumber(m[3])
  seq, token, due = tonumber(m[4] or '0'), tonumber(m[5] or '0'), tonumber(m[6] or '0')
end
local function flush()
  if dirty then
    redis.call('HSET', meta, 'used', held, 'seq', seq, 'token', token, 'due', due)
    dirty = false
  end
end
-- Every new expiry written to `holders` or `waiting` goes through here
-- (a renewal only moves one later, which keeps `due` a lower bound).
local function expiring(exp)
  if held == nil then load() end
  if exp < due then due, dirty = exp, true end
end
local function used()
  if held == nil then load() end
  return held
end
local function add_used(n)
  if held == nil then load() end
  held, dirty = held + n, true
end
local function next_token()
  if held == nil then load() end
  token, dirty = token + 1, true
  return token
end
local function next_seq()
  if held == nil then load() end
  seq, dirty = seq + 1, true
  return seq
end
-- The fencing counter never goes below a token a process has seen.
local function raise_token(seen)
  if held == nil then load() end
  if token < seen then token, dirty = seen, true end
end
-- Time left (µs) before grants may resume after a loss; nil: none.
local function quarantined(now)
  if held == nil then load() end
  if resume_at > now then return resume_at - now end
  return nil
end
-- The record was made again (`cap` just set): lease records that
-- outlived it (an eviction of `meta` alone) are forgotten, so that `used`
-- counts only leases registered again, and grants wait until `resume`.
local function remake(resume)
  flush()
  redis.call('DEL', holders, leases)
  redis.call('HSET', meta, 'used', 0, 'quarantine', int(resume))
  redis.call('HSETNX', meta, 'seq', 0)
  redis.call('HSETNX', meta, 'token', 0)
  held = nil
end
-- A lease of `n` permits (nil: read from its record) given back; its
-- permits (0: none held).
local function drop_lease(id, n)
  if n == nil then
    local rec = redis.call('HGET', leases, id)
    if not rec then return 0 end
    n = tonumber(string.match(rec, '^(%d+):'))
  end
  if redis.call('HDEL', leases, id) == 0 then return 0 end
  redis.call('ZREM', holders, id)
  add_used(-n)
  return n
end
-- The grant held by `id` (a waiter granted by another call): its token
-- and expiry, or nil.
local function lease_of(id)
  local rec = redis.call('HGET', leases, id)
  if not rec then return nil end
  local exp = redis.call('ZSCORE', holders, id)
  if not exp then return nil end
  return tonumber(string.match(rec, ':(%d+)$')), tonumber(exp)
end
local function drop_waiter(id)
  redis.call('ZREM', queue, id)
  redis.call('HDEL', waiters, id)
  redis.call('ZREM', waiting, id)
end
-- No expiry in either set (2^52 µs: the year 2112).
local NONE_DUE = 4503599627370496
local function reclaim(now)
  if held == nil then load() end
  if due > now then return end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', holders, '-inf', now)) do
    drop_lease(id)
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', waiting, '-inf', now)) do
    drop_waiter(id)
  end
  local soonest = NONE_DUE
  for _, set in ipairs({holders, waiting}) do
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if #first > 0 then soonest = math.min(soonest, tonumber(first[2])) end
  end
  due, dirty = soonest, true
end
-- A lease of `n` permits until `exp`.
local function grant(id, n, exp, process)
  local t = next_token()
  redis.call('ZADD', holders, exp, id)
  expiring(exp)
  redis.call('HSET', leases, id, n .. ':' .. process .. ':' .. t)
  add_used(n)
  return t, exp
end
-- Grants made to waiters of the calling process (`caller`), as
-- `seq, token, expiry` (a waiter's id is `<process>:<seq>`): the reply
-- carries them, so they need no push.
local mine = {}
-- Grants the head of the queue while its permits are free (strict FIFO: a
-- waiter never passes the one ahead of it), and pushes each grant to its
-- process, unless that process is `caller`.
local function serve(cap, now, prefix, caller)
  -- Nothing free: nobody to look at (the usual case under contention).
  if cap - used() <= 0 or quarantined(now) then return end
  while true do
    if cap - used() <= 0 then return end
    local head = redis.call('ZRANGE', queue, 0, 0)
    if #head == 0 then return end
    local id = head[1]
    local rec = redis.call('HGET', waiters, id)
    -- A queued waiter's process proved alive until its entry's expiry:
    -- its lease lasts no longer (a dead process's waiter, granted, gives
    -- the permit back when that process's leases end, not a TTL later).
    local alive = tonumber(redis.call('ZSCORE', waiting, id) or '0')
    if not rec or alive <= now then
      drop_waiter(id)
    else
      local n, ttl, process = string.match(rec, '^(%d+):(%d+):(.*)$')
      n, ttl = tonumber(n), tonumber(ttl)
      if cap - used() < n then return end
      local t, exp = grant(id, n, math.min(now + ttl, alive), process)
      drop_waiter(id)
      if process == caller then
        table.insert(mine, tonumber(string.match(id, ':(%d+)$')))
        table.insert(mine, t)
        table.insert(mine, exp)
      else
        local wake = prefix .. ':wake:' .. process
        -- A list its process stopped reading goes with its first grant's
        -- lease (a live process empties it with each read).
        local pushed = redis.call('RPUSH', wake, id .. '|' .. t .. '|' .. int(exp))
        if pushed == 1 then
          redis.call('PEXPIRE', wake, math.floor(ttl / 1000) + 1000)
        end
      end
    end
  end
end
-- The soonest expiry of a lease or a waiter, or the quarantine's end, from
-- now (-1: none).
local function next_event(now)
  local soonest = nil
  for _, set in ipairs({holders, waiting}) do
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if #first > 0 then
      local d = math.max(tonumber(first[2]) - now, 0)
      if soonest == nil or d < soonest then soonest = d end
    end
  end
  -- Grants resume then: the head calls again.
  local q = quarantined(now)
  if q and (soonest == nil or q < soonest) then soonest = q end
  return soonest or -1
end
local function check_cap(cap)
  if held == nil then load() end
  if not stored_cap then return {'NOINIT', 0, 0, 0} end
  if stored_cap ~= cap then return {'CAP', stored_cap, 0, 0} end
  return nil
end
"#;

/// Creates the semaphore's record if missing; refuses a different cap. The
/// fencing counter never goes below `min_token` (the highest token the
/// caller has seen), so tokens keep increasing across a lost record. A
/// record made here grants nothing for `quarantine` µs (a loss may have
/// left holders that Redis no longer knows).
/// ARGV: cap, min_token, quarantine. Reply: `{'OK', cap, quarantine left,
/// now}` or `{'CAP', stored, 0, 0}`.
const INIT: &str = r#"
local cap, min_token, q = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('HSETNX', meta, 'cap', cap) == 1 then
  remake(now_us() + q)
end
raise_token(min_token)
flush()
local bad = check_cap(cap)
if bad then return bad end
local now = now_us()
return {'OK', cap, quarantined(now) or 0, now}
"#;

/// A batch of one process's calls, run in order: acquire (`W`: wait, first
/// call; `w`: wait, called again; `T`: try), release (`R`) and cancel
/// (`C`). ARGV: cap, prefix, ttl (µs),
/// process, then per call: kind, id, permits. Reply: `{now}`, then three
/// numbers per call, then `seq, token, expiry` per grant made to a waiter
/// of this process (pushed to no list).
/// - acquire: `0, token, expiry` granted (at once, or a grant made
///   meanwhile to this queued waiter); `1, rank, next event` queued (next
///   event: the soonest lease or waiter expiry or quarantine end, µs, -1:
///   none, sent to the first two ranks only); `2` busy (`try`); `3, left`
///   quarantined (`try`); `4, stored` another cap; `5` no record.
/// - release: `n` permits given back (0: the lease had expired).
/// - cancel: `1` left the queue, `2` a grant that raced the cancel given
///   back, `0` neither. The caller never made a lease of this id.
const BATCH: &str = r#"
local cap, prefix, ttl, process = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_us()
local bad = check_cap(cap)
reclaim(now)
-- A grant at once, else a place in the queue (or, `try`, nothing); a
-- queued waiter calling again picks up a grant made meanwhile. In
-- quarantine nothing is granted at once: a waiter queues, `try` is told.
local function acquire(id, n, try, first)
  if bad then
    if bad[1] == 'CAP' then return 4, bad[2], 0 end
    return 5, 0, 0
  end
  serve(cap, now, prefix, process)
  local rank
  if not first then
    local t, exp = lease_of(id)
    if t then return 0, t, exp end
    rank = redis.call('ZRANK', queue, id)
  end
  if not rank then
    local q = quarantined(now)
    if q and try then return 3, q, 0 end
    local waiting_ahead = redis.call('ZCARD', queue)
    if not q and cap - used() >= n and waiting_ahead == 0 then
      local t, exp = grant(id, n, now + ttl, process)
      return 0, t, exp
    end
    if try then return 2, 0, 0 end
    redis.call('ZADD', queue, next_seq(), id)
    redis.call('HSET', waiters, id, n .. ':' .. ttl .. ':' .. process)
    redis.call('ZADD', waiting, now + ttl, id)
    expiring(now + ttl)
    rank = waiting_ahead
  end
  -- Only the first two watch the soonest expiry (see acquire.rs).
  local soonest = -1
  if rank < 2 then soonest = next_event(now) end
  return 1, rank, soonest
end
local function release(id, n)
  n = drop_lease(id, n)
  serve(cap, now, prefix, process)
  return n, 0, 0
end
local function cancel(id)
  local reply = 0
  if redis.call('ZSCORE', queue, id) then
    drop_waiter(id)
    reply = 1
  elseif drop_lease(id) > 0 then
    reply = 2
  end
  serve(cap, now, prefix, process)
  return reply, 0, 0
end
local out = {now}
for i = 5, #ARGV, 3 do
  local kind, id, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local a, b, c
  if kind == 'R' then
    a, b, c = release(id, n)
  elseif kind == 'C' then
    a, b, c = cancel(id)
  else
    a, b, c = acquire(id, n, kind == 'T', kind ~= 'w')
  end
  table.insert(out, a)
  table.insert(out, b)
  table.insert(out, c)
end
flush()
for _, v in ipairs(mine) do table.insert(out, v) end
return out
"#;

/// One process's renewal: each of its leases still held gets `ttl` more,
/// each of its waiters stays queued (or learns of its grant), and the fencing counter is kept at or
/// above the highest token the process has seen. A record found gone is
/// made again, quarantined for one TTL; in quarantine a lease Redis lost
/// (its holder still holds it: it renews only leases valid locally) is
/// registered again while the cap has room, so a loss ends no holder's
/// work, and refused once the cap is full (the holders past the cap after
/// a partial loss). ARGV: ttl, cap, prefix, max token seen, leases count,
/// process, then the lease ids, then their permit counts, then the waiter
/// ids. Reply: `{now, e1, e2, ...}`, per lease its new expiry, `0` if it
/// had expired, `-1` if Redis has no record of it (outside quarantine: a
/// loss, unless released meanwhile), `-2` if refused for the cap; then
/// per waiter two numbers: `token, expiry` if granted (its notification
/// may have been lost), `0, rank` if queued, `-1, 0` if not queued.
const RENEW: &str = r#"
local ttl, cap, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local seen, nl, process = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local now = now_us()
if redis.call('HSETNX', meta, 'cap', cap) == 1 then
  remake(now + ttl)
end
raise_token(seen)
local q = quarantined(now)
local out = {now}
for i = 1, nl do
  local id, n = ARGV[6 + i], tonumber(ARGV[6 + nl + i])
  local exp = redis.call('ZSCORE', holders, id)
  -- Half a lease (one of its two keys evicted) counts as missing.
  local whole = exp and redis.call('HEXISTS', leases, id) == 1
  if whole and tonumber(exp) > now then
    redis.call('ZADD', holders, 'XX', now + ttl, id)
    table.insert(out, now + ttl)
  elseif whole then
    drop_lease(id)
    table.insert(out, 0)
  elseif not q then
    table.insert(out, -1)
  elseif used() + n <= cap then
    redis.call('ZADD', holders, now + ttl, id)
    expiring(now + ttl)
    redis.call('HSET', leases, id, int(n) .. ':' .. process .. ':0')
    add_used(n)
    table.insert(out, now + ttl)
  else
    table.insert(out, -2)
  end
end
reclaim(now)
serve(cap, now, prefix, nil)
-- Each waiter: its grant (a lost notification), its rank, or gone.
for i = 7 + 2 * nl, #ARGV do
  local id = ARGV[i]
  local t, exp = lease_of(id)
  local rank = (not t) and redis.call('ZRANK', queue, id)
  if t then
    table.insert(out, t)
    table.insert(out, exp)
  elseif rank then
    redis.call('ZADD', waiting, 'XX', now + ttl, id)
    table.insert(out, 0)
    table.insert(out, rank)
  else
    table.insert(out, -1)
    table.insert(out, 0)
  end
end
flush()
return out
"#;

/// A holder found its valid lease missing from a record that exists: some
/// writes were lost (an AOF `everysec` restart, a failover, an eviction of
/// some keys). The leases Redis has may disagree with the holders, so
/// they are all forgotten and the record quarantined for one TTL; live
/// holders register again at their renewals, up to the cap. Nothing
/// changes if a quarantine is already running. The queue stays. ARGV:
/// ttl, max token seen. Reply: quarantine left (µs).
const LOST: &str = r#"
local ttl, seen = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_us()
local q = quarantined(now)
if q then return q end
remake(now + ttl)
raise_token(seen)
flush()
redis.call('HINCRBY', meta, 'losses', 1)
return ttl
"#;

/// The scripts, compiled once (their SHA1 hashes computed; Redis loads a
/// script on its first `EVALSHA` miss).
pub(crate) struct Scripts {
    pub(crate) init: Script,
    pub(crate) batch: Script,
    pub(crate) renew: Script,
    pub(crate) lost: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        let with = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            init: with(INIT),
            batch: with(BATCH),
            renew: with(RENEW),
            lost: with(LOST),
        }
    }
}
