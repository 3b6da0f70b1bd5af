"""Per-account leases in Redis: the one worker instance allowed to run an account.

A lease is `keys.worker_lease(worker, id)`, in the worker's own keys, holding `<worker name>/<instance>` with an
expiry; the worker name itself is owned by one live instance at a time (`celery_app.presence`). Which worker may
hold one is the control plane's word (`assign`, written where it sends the account's start or operation, and
readable only by workers): `keys.account_assignment(id)` names the worker, and every worker it named before
(`was:<name>`) until that worker's lease is gone (`sweep`, every scan). A worker takes a lease only while the
account is assigned to it (or to nobody yet) and no earlier worker's lease is left; a renewal finds an account
given to another worker lost, so its client stops and lets go. No worker's Redis login can write another's
leases or the assignments (`backend.worker_logins`), so a worker host cannot take or hold another's account.
The running worker renews all of its leases in one call per heartbeat and stops any client whose lease another
holder has. A lease that is simply gone (Redis restarted with empty data) is taken back by the renewal: the client
running under it is still the only one, and nobody else could have started the account without the lease.
Acquire, renew and release are atomic scripts: nobody can start an account whose lease another holds.

Through a failover (Redis Sentinel promotes a replica, whose copy of the data trails the primary's by
whatever asynchronous replication had not sent yet), a lease write counts only once a replica has it:
- every lease script also returns how many replicas are online (`INFO replication`, read inside the script,
  on the server that ran it); when there are any, the write is followed on the same connection by
  `WAIT 1 <ACK_TIMEOUT>`, which returns once a replica has acknowledged everything written before it. The
  WAIT goes in the same round trip when this process heard of replicas within `TRUST_SECONDS`, else after
  the reply has revealed some (the script, idempotent, runs again with it), so the first write after a
  failover does not wait out a timeout for replicas the promoted primary does not have;
- an acquire that no replica acknowledged is not granted: it is released and the caller retries (as it
  retries any lease held elsewhere); for `STALL_SECONDS` after that, acquires are refused without trying, so
  a stalled replica costs one timeout, not one per account. A grant therefore survives the primary's death:
  Sentinel promotes the replica with the highest replication offset, which has it (all replicas at the same
  `replica-priority`, and unless the replica that acknowledged fails together with the primary);
- a renewal that no replica acknowledged raises `NotReplicated` (unless it found leases held elsewhere: those
  are returned first, their clients must stop at once). The worker's fence (`worker.presence`) counts only
  renewals that went through, so a worker stops its clients half a lease after the last renewal a replica
  has, whatever the replication lag: before any lease the promoted replica holds can lapse;
- a release waits too, when it can at once (best effort): a lease let go just before the primary died is
  rarely back, and if it is, it delays the next holder by one lease, no more.
With no replica online (a single Redis, or the replica just promoted with none of its own) nothing waits.

No fencing token: the resource to protect is Telegram's auth key, which cannot check one, and within the
fleet the holder (`<worker>/<instance>`) already names the one process a renewal compares against; a token
would close nothing the acknowledged writes and the fence leave open. Not closed by this module: a primary
cut off from the sentinels but still reached by some workers (split brain), or whose only replica was
disconnected when a lease was written and is promoted before it caught up — `min-replicas-to-write 1` on the
data nodes closes both, where there are two replicas or more — and clocks that disagree between the primary
and the replica it fails over to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from redis import Redis
from redis.exceptions import RedisError

from celery_app import keys

log = logging.getLogger(__name__)

ACK_TIMEOUT_SECONDS = 1.0  # how long a lease write waits for a replica to acknowledge it
STALL_SECONDS = 2.0  # after an unacknowledged grant: acquires are refused without trying, this long
TRUST_SECONDS = 1.0  # how long a replica count is trusted to send the WAIT along with the write

# Every script's reply starts with the number of replicas online on the server that ran it.
_ONLINE_REPLICAS = """
local online = 0
for _ in string.gmatch(redis.call('INFO', 'replication'), 'state=online') do online = online + 1 end
"""

# KEYS: the lease, the heartbeat index. ARGV: holder, ttl ms, same-name prefix, worker, account id, lease key
# prefix, the assignment (read, not declared: a worker's login may only read it, and Redis checks declared keys for
# writing). Another worker's lease for the account refuses it: one the assignment names (`assign` recorded every
# lease left when it gave the account), or, for an account never assigned (started from before assignments, or sent
# without the dispatcher), one of any worker in the index.
_ACQUIRE = (
    _ONLINE_REPLICAS
    + """
local others = {}
local given = false
local assigned = redis.call('HGETALL', ARGV[7])
for i = 1, #assigned, 2 do
  local field, value = assigned[i], assigned[i + 1]
  if field == 'worker' then
    if value ~= ARGV[4] then return {online, 0, value .. '/'} end
    given = true
  elseif string.sub(field, 1, 4) == 'was:' then
    others[string.sub(field, 5)] = true
  end
end
if not given then
  for _, name in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do others[name] = true end
end
others[ARGV[4]] = nil
for name in pairs(others) do
  local held = redis.call('GET', ARGV[6] .. name .. ':lease:' .. ARGV[5])
  if held then return {online, 0, held} end
end
local current = redis.call('GET', KEYS[1])
local same_name = current and ARGV[3] ~= '' and string.sub(current, 1, string.len(ARGV[3])) == ARGV[3]
if (not current) or current == ARGV[1] or same_name then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {online, 1, ARGV[1]}
end
return {online, 0, current}
"""
)

# KEYS: the leases. ARGV: holder, ttl ms, worker, then the leases' assignments (read only: see _ACQUIRE).
_RENEW = (
    _ONLINE_REPLICAS
    + """
local reply = {online}
for i = 1, #KEYS do
  local key = KEYS[i]
  local assigned = redis.call('HGET', ARGV[3 + i], 'worker')
  local current = redis.call('GET', key)
  if assigned and assigned ~= ARGV[3] then
    table.insert(reply, i)
  elseif current == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not current then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(reply, i)
  end
end
return reply
"""
)

# KEYS: the assignment, the set of moving accounts, the heartbeat index. ARGV: worker, account id, lease key prefix.
# The worker it had before is remembered (`was:`) until its lease is gone; an account given to nobody yet may still
# run under a lease taken before assignments: each such lease is remembered the same way (once, here, so that a
# worker's acquire, retried while it waits, reads only the assignment).
_ASSIGN = """
local current = redis.call('HGET', KEYS[1], 'worker')
if current == ARGV[1] then return 0 end
local earlier = {}
if current then
  earlier[1] = current
else
  for _, name in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if name ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. name .. ':lease:' .. ARGV[2]) == 1 then
      earlier[#earlier + 1] = name
    end
  end
end
for _, name in ipairs(earlier) do redis.call('HSET', KEYS[1], 'was:' .. name, '1') end
if #earlier > 0 then redis.call('SADD', KEYS[2], ARGV[2]) end
redis.call('HSET', KEYS[1], 'worker', ARGV[1])
return 1
"""

_RELEASE = (
    _ONLINE_REPLICAS
    + """
if redis.call('GET', KEYS[1]) == ARGV[1] then return {online, redis.call('DEL', KEYS[1])} end
return {online, 0}
"""
)


class NotReplicated(RedisError):
    """A lease write reached the primary, but no replica acknowledged it in time: a failover could undo it."""


@dataclass
class _Replicas:
    """What this process last learned about one Redis client's primary."""

    online: int = 0  # replicas online, as the last lease script reported
    checked_at: float = 0.0  # monotonic time of that report
    stalled_until: float = 0.0  # monotonic time until which acquires are refused without trying


_seen: WeakKeyDictionary[Redis, _Replicas] = WeakKeyDictionary()


def _replicas_of(redis: Redis) -> _Replicas:
    found = _seen.get(redis)
    if found is None:
        found = _seen[redis] = _Replicas()
    return found


def replicas_online(redis: Redis) -> bool:
    """Whether the last lease script this process ran through `redis` found replicas online (renewals run with
    every heartbeat, so this is at most a heartbeat old): other writes that must survive a failover — a status
    said before a client lets go — then wait for a replica too."""
    seen = _seen.get(redis)
    return seen is not None and seen.online > 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _write(
    redis: Redis, script: str, names: list[str], *args: object, again: Callable[[list[Any]], bool]
) -> tuple[list[Any], bool]:
    """Run a lease script; returns its reply (after the replica count) and whether a replica acknowledged it
    (True when none is online). The WAIT goes on the script's own connection (one pipeline), at once when this
    process has just heard of replicas; else, when the reply reveals some and `again(reply)` says the write is
    worth confirming, the script (idempotent for what it wrote) runs a second time, with the WAIT."""
    seen = _replicas_of(redis)
    first: list[Any] | None = None
    for waiting in (seen.online > 0 and time.monotonic() - seen.checked_at < TRUST_SECONDS, True):
        pipe = redis.pipeline(transaction=False)
        pipe.eval(script, len(names), *names, *args)
        if waiting:
            pipe.execute_command("WAIT", 1, int(ACK_TIMEOUT_SECONDS * 1000))
        replies = pipe.execute()
        online, *reply = replies[0]
        seen.online, seen.checked_at = int(online), time.monotonic()
        first = reply if first is None else first
        if seen.online == 0:
            return first, True
        if waiting:
            return first, int(replies[1]) >= 1
        if not again(first):
            return first, False
    raise AssertionError("unreachable")  # pragma: no cover - the second pass always waits


def holder_id(worker_name: str, instance: str) -> str:
    return f"{worker_name}/{instance}"


def worker_of(holder: str) -> str:
    """The worker a holder belongs to (`w1` for `w1/…` and for an operation's `w1#op/…`)."""
    return holder.split("/", 1)[0].split("#", 1)[0]


def _lease_key(account_id: int, holder: str) -> str:
    return keys.worker_lease(worker_of(holder), account_id)


def assign(redis: Redis | Any, account_id: int, worker: str) -> None:
    """Give the account to `worker` (the control plane, before it sends the start or operation there); on a
    client or queued on a pipeline. The worker it had before keeps its lease until it lets go: until then the
    new one cannot take it (`acquire`), and the old one's next renewal finds the account lost."""
    redis.eval(
        _ASSIGN,
        3,
        keys.account_assignment(account_id),
        keys.ASSIGNMENTS_MOVING,
        keys.HEARTBEATS,
        worker,
        account_id,
        f"{keys.PREFIX}:worker:",
    )


def sweep(redis: Redis) -> int:
    """Forget the earlier workers of moved accounts once their leases are gone (every scan); returns how many
    accounts are still moving."""
    moving = [int(value) for value in redis.smembers(keys.ASSIGNMENTS_MOVING)]
    if not moving:
        return 0
    pipe = redis.pipeline(transaction=False)
    for account_id in moving:
        pipe.hgetall(keys.account_assignment(account_id))
    earlier = {
        account_id: [_text(field)[4:] for field in fields if _text(field).startswith("was:")]
        for account_id, fields in zip(moving, pipe.execute(), strict=True)
    }
    pairs = [(account_id, worker) for account_id, workers in earlier.items() for worker in workers]
    for account_id, worker in pairs:
        pipe.exists(keys.worker_lease(worker, account_id))
    gone = [pair for pair, held in zip(pairs, pipe.execute() if pairs else [], strict=True) if not held]
    for account_id, worker in gone:
        pipe.hdel(keys.account_assignment(account_id), f"was:{worker}")
        earlier[account_id].remove(worker)
    settled = [account_id for account_id, workers in earlier.items() if not workers]
    if settled:
        pipe.srem(keys.ASSIGNMENTS_MOVING, *settled)
    if gone or settled:
        pipe.execute()
    return len(moving) - len(settled)


def assigned_workers(redis: Redis, account_ids: list[int]) -> dict[int, str]:
    """account id -> the worker the control plane gave it to (accounts given to none are left out)."""
    if not account_ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for account_id in account_ids:
        pipe.hget(keys.account_assignment(account_id), "worker")
    return {i: _text(value) for i, value in zip(account_ids, pipe.execute(), strict=True) if value is not None}


def acquire(redis: Redis, account_id: int, holder: str, ttl_seconds: float) -> tuple[bool, str]:
    """Take or renew the lease; returns (acquired, current holder).

    A lease held by an earlier instance of the same worker name is taken over: owning the name means that
    instance is dead, or fenced itself before its name could expire. A grant no replica acknowledged is let go
    and reported as not acquired (the holder then reads as nobody): see the module's note on failovers.
    """
    seen = _replicas_of(redis)
    if seen.online and time.monotonic() < seen.stalled_until:
        current = holder_of(redis, account_id, holder)
        return False, "" if current in (None, holder) else current
    same_name = holder.split("/", 1)[0] + "/"
    key = _lease_key(account_id, holder)
    (ok, current), acknowledged = _write(
        redis,
        _ACQUIRE,
        [key, keys.HEARTBEATS],
        holder,
        int(ttl_seconds * 1000),
        same_name,
        worker_of(holder),
        account_id,
        f"{keys.PREFIX}:worker:",
        keys.account_assignment(account_id),
        again=lambda reply: bool(reply[0]),
    )
    if ok and not acknowledged:
        seen.stalled_until = time.monotonic() + STALL_SECONDS
        log.warning(
            "account %d: no replica acknowledged its lease within %gs; not taken (retried later)",
            account_id,
            ACK_TIMEOUT_SECONDS,
        )
        redis.eval(_RELEASE, 1, key, holder)
        return False, ""
    return bool(ok), _text(current)


def renew(redis: Redis, account_ids: list[int], holder: str, ttl_seconds: float) -> list[int]:
    """Renew (or take back, if gone) every lease this holder has; returns the ids another holder has now, or
    that the control plane has given to another worker.

    Raises `NotReplicated` when no replica acknowledged the renewal (and none was found held elsewhere).
    """
    if not account_ids:
        return []
    names = [_lease_key(i, holder) for i in account_ids]
    lost, acknowledged = _write(
        redis,
        _RENEW,
        names,
        holder,
        int(ttl_seconds * 1000),
        worker_of(holder),
        *[keys.account_assignment(i) for i in account_ids],
        again=lambda reply: len(reply) < len(names),
    )
    taken = [account_ids[int(index) - 1] for index in lost]
    if not acknowledged and not taken:
        raise NotReplicated(
            f"no replica acknowledged the renewal of {len(account_ids)} lease(s) within {ACK_TIMEOUT_SECONDS:g}s"
        )
    return taken


def release(redis: Redis, account_id: int, holder: str) -> bool:
    """Let go of the lease if this holder has it (when replicas are online and this process knows it, waiting
    for one to have that: a release lost in a failover delays the next holder by a lease, no more)."""
    (deleted,), _acknowledged = _write(
        redis, _RELEASE, [_lease_key(account_id, holder)], holder, again=lambda _reply: False
    )
    return bool(deleted)


def holder_of(redis: Redis, account_id: int, holder: str) -> str | None:
    """Who holds the account's lease among the instances of `holder`'s worker."""
    value = redis.get(_lease_key(account_id, holder))
    return value.decode() if isinstance(value, bytes) else value


def worker_of_holder(holder: str | None) -> str | None:
    return None if not holder else holder.split("/", 1)[0]
