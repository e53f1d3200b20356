//! The protocol: one Lua script per operation, run atomically by Redis, so
//! every decision (who holds, who is next, what expired) is taken in one
//! place on one clock (Redis's `TIME`, in microseconds).
//!
//! Keys, all under one hash tag (`{cenote:fleet:<name>}`), so that they
//! live in one slot of a Redis Cluster:
//! - `meta` (hash): `cap`, `used` (permits held), `token` (the fencing
//!   counter), `seq` (the queue's order), and, for one TTL after the
//!   record was made again, `quarantine` (when grants may resume);
//! - `holders` (sorted set): lease id by expiry;
//! - `leases` (hash): lease id to `n:process`;
//! - `queue` (sorted set): waiter id by arrival (`seq`);
//! - `waiters` (hash): waiter id to `n:ttl:process`;
//! - `waiting` (sorted set): waiter id by expiry (a waiter whose process
//!   stops renewing it leaves the queue);
//! - `granted` (hash): a grant made to a queued waiter by another call,
//!   `token:expiry`, until its holder renews or releases it;
//! - `wake:<process>` (list): grants pushed to a process, read with
//!   `BLMPOP` by its wake listener.
//!
//! A waiter's id becomes its lease's id when it is granted.

use redis::Script;

/// Functions every script shares: the clock, reclaiming expired leases and
/// waiters, granting, and serving the queue in order.
const PRELUDE: &str = r#"
local meta, holders, leases, queue, waiters, waiting, granted =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
-- A number as an integer string (tostring would round 16 digits to 14).
local function int(x)
  return string.format('%.0f', x)
end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- The cap, permits held and the quarantine's end: read once per script
-- (one call), then kept in step with the writes.
local held, resume_at, stored_cap = nil, nil, nil
local function load()
  local m = redis.call('HMGET', meta, 'used', 'quarantine', 'cap')
  held, resume_at = tonumber(m[1] or '0'), tonumber(m[2] or '0')
  stored_cap = m[3] and tonumber(m[3])
end
local function used()
  if held == nil then load() end
  return held
end
local function add_used(n)
  redis.call('HINCRBY', meta, 'used', n)
  if held ~= nil then held = held + n end
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
  redis.call('DEL', holders, leases, granted)
  redis.call('HSET', meta, 'used', 0, 'quarantine', int(resume))
  held = nil
  redis.call('HSETNX', meta, 'seq', 0)
  redis.call('HSETNX', meta, 'token', 0)
end
local function drop_lease(id)
  local rec = redis.call('HGET', leases, id)
  if not rec then return 0 end
  local n = tonumber(string.match(rec, '^(%d+):'))
  redis.call('HDEL', leases, id)
  redis.call('ZREM', holders, id)
  redis.call('HDEL', granted, id)
  add_used(-n)
  return n
end
local function drop_waiter(id)
  redis.call('ZREM', queue, id)
  redis.call('HDEL', waiters, id)
  redis.call('ZREM', waiting, id)
end
local function reclaim(now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', holders, '-inf', now)) do
    drop_lease(id)
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', waiting, '-inf', now)) do
    drop_waiter(id)
  end
end
local function grant(id, n, ttl, process, now)
  local token = redis.call('HINCRBY', meta, 'token', 1)
  local exp = now + ttl
  redis.call('ZADD', holders, exp, id)
  redis.call('HSET', leases, id, int(n) .. ':' .. process)
  add_used(n)
  return token, exp
end
-- Grants the head of the queue while its permits are free (strict FIFO: a
-- waiter never passes the one ahead of it), and pushes each grant to its
-- process.
local function serve(cap, now, prefix)
  -- Nothing free: nobody to look at (the usual case under contention).
  if cap - used() <= 0 or quarantined(now) then return end
  while true do
    if cap - used() <= 0 then return end
    local head = redis.call('ZRANGE', queue, 0, 0)
    if #head == 0 then return end
    local id = head[1]
    local rec = redis.call('HGET', waiters, id)
    if not rec then
      drop_waiter(id)
    else
      local n, ttl, process = string.match(rec, '^(%d+):(%d+):(.*)$')
      n, ttl = tonumber(n), tonumber(ttl)
      if cap - used() < n then return end
      local token, exp = grant(id, n, ttl, process, now)
      drop_waiter(id)
      redis.call('HSET', granted, id, int(token) .. ':' .. int(exp))
      local wake = prefix .. ':wake:' .. process
      redis.call('RPUSH', wake, id .. '|' .. int(token) .. '|' .. int(exp))
      redis.call('PEXPIRE', wake, math.floor(ttl / 1000) + 1000)
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
if tonumber(redis.call('HGET', meta, 'token') or '0') < min_token then
  redis.call('HSET', meta, 'token', int(min_token))
end
if redis.call('HSETNX', meta, 'cap', cap) == 1 then
  remake(now_us() + q)
end
local bad = check_cap(cap)
if bad then return bad end
local now = now_us()
return {'OK', cap, quarantined(now) or 0, now}
"#;

/// A grant at once, else a place in the queue (or, `try`, nothing); a
/// queued waiter calling again picks up a grant made meanwhile. In
/// quarantine nothing is granted at once: a waiter queues, `try` is told.
/// ARGV: id, n, ttl (µs), process, cap, mode (`wait` | `try`), prefix.
/// Reply: `{'OK', token, expiry, now}`, `{'QUEUED', rank, next_event, now}`,
/// `{'BUSY', 0, 0, now}`, `{'QUARANTINED', time left, 0, now}`,
/// `{'CAP', stored, 0, 0}`, `{'NOINIT', 0, 0, 0}`.
const ACQUIRE: &str = r#"
local id, n, ttl, process = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local cap, mode, prefix = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local bad = check_cap(cap)
if bad then return bad end
local now = now_us()
reclaim(now)
serve(cap, now, prefix)
local g = redis.call('HGET', granted, id)
if g then
  local token, exp = string.match(g, '^(%d+):(%d+)$')
  return {'OK', tonumber(token), tonumber(exp), now}
end
if not redis.call('ZSCORE', queue, id) then
  -- In quarantine a waiter queues (served when it ends); `try` is told.
  local q = quarantined(now)
  if q and mode == 'try' then return {'QUARANTINED', q, 0, now} end
  if not q and cap - used() >= n and redis.call('ZCARD', queue) == 0 then
    local token, exp = grant(id, n, ttl, process, now)
    return {'OK', token, exp, now}
  end
  if mode == 'try' then return {'BUSY', 0, 0, now} end
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  redis.call('ZADD', queue, seq, id)
  redis.call('HSET', waiters, id, int(n) .. ':' .. int(ttl) .. ':' .. process)
  redis.call('ZADD', waiting, now + ttl, id)
end
-- Only the first two watch the soonest expiry (see acquire.rs).
local rank = redis.call('ZRANK', queue, id)
local soonest = -1
if rank < 2 then soonest = next_event(now) end
return {'QUEUED', rank, soonest, now}
"#;

/// Gives a lease back and serves the queue. ARGV: id, cap, prefix.
/// Reply: `{n, now}` (n = 0: the lease had already expired).
const RELEASE: &str = r#"
local id, cap, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_us()
local n = drop_lease(id)
reclaim(now)
serve(cap, now, prefix)
return {n, now}
"#;

/// A waiter gives up: out of the queue, or, if a grant raced the cancel
/// (made by a release and pushed, or made at once by its own acquire whose
/// reply it never read), that lease given back. The caller never made a
/// lease of this id. ARGV: id, cap, prefix. Reply: `'CANCELLED'`,
/// `'RELEASED'` or `'NONE'`.
const CANCEL: &str = r#"
local id, cap, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_us()
local reply = 'NONE'
if redis.call('ZSCORE', queue, id) then
  drop_waiter(id)
  reply = 'CANCELLED'
elseif drop_lease(id) > 0 then
  reply = 'RELEASED'
end
reclaim(now)
serve(cap, now, prefix)
return reply
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
if tonumber(redis.call('HGET', meta, 'token') or '0') < seen then
  redis.call('HSET', meta, 'token', int(seen))
end
local q = quarantined(now)
local out = {now}
for i = 1, nl do
  local id, n = ARGV[6 + i], tonumber(ARGV[6 + nl + i])
  local exp = redis.call('ZSCORE', holders, id)
  -- Half a lease (one of its two keys evicted) counts as missing.
  local whole = exp and redis.call('HEXISTS', leases, id) == 1
  if whole and tonumber(exp) > now then
    redis.call('ZADD', holders, 'XX', now + ttl, id)
    redis.call('HDEL', granted, id)
    table.insert(out, now + ttl)
  elseif whole then
    drop_lease(id)
    table.insert(out, 0)
  elseif not q then
    table.insert(out, -1)
  elseif used() + n <= cap then
    redis.call('ZADD', holders, now + ttl, id)
    redis.call('HSET', leases, id, int(n) .. ':' .. process)
    add_used(n)
    table.insert(out, now + ttl)
  else
    table.insert(out, -2)
  end
end
reclaim(now)
serve(cap, now, prefix)
-- Each waiter: its grant (a lost notification), its rank, or gone.
for i = 7 + 2 * nl, #ARGV do
  local id = ARGV[i]
  local g = redis.call('HGET', granted, id)
  local rank = redis.call('ZRANK', queue, id)
  if g then
    local token, exp = string.match(g, '^(%d+):(%d+)$')
    table.insert(out, tonumber(token))
    table.insert(out, tonumber(exp))
  elseif rank then
    redis.call('ZADD', waiting, 'XX', now + ttl, id)
    table.insert(out, 0)
    table.insert(out, rank)
  else
    table.insert(out, -1)
    table.insert(out, 0)
  end
end
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
if tonumber(redis.call('HGET', meta, 'token') or '0') < seen then
  redis.call('HSET', meta, 'token', int(seen))
end
redis.call('HINCRBY', meta, 'losses', 1)
return ttl
"#;

/// The scripts, compiled once (their SHA1 hashes computed; Redis loads a
/// script on its first `EVALSHA` miss).
pub(crate) struct Scripts {
    pub(crate) init: Script,
    pub(crate) acquire: Script,
    pub(crate) release: Script,
    pub(crate) cancel: Script,
    pub(crate) renew: Script,
    pub(crate) lost: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        let with = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            init: with(INIT),
            acquire: with(ACQUIRE),
            release: with(RELEASE),
            cancel: with(CANCEL),
            renew: with(RENEW),
            lost: with(LOST),
        }
    }
}
