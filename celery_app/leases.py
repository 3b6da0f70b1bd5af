"""Per-account leases in Redis: the one worker instance allowed to run an account.

A lease is `keys.account_lease(id)` holding `<worker name>/<instance>` with an expiry; the worker name
itself is owned by one live instance at a time (`celery_app.presence`). The running worker
renews all of its leases in one call per heartbeat and stops any client whose lease another holder has.
A lease that is simply gone (Redis restarted with empty data) is taken back by the renewal: the client
running under it is still the only one, and nobody else could have started the account without the lease.
Acquire, renew and release are atomic scripts: nobody can start an account whose lease another holds.
"""

from __future__ import annotations

from redis import Redis

from celery_app import keys

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
local same_name = current and ARGV[3] ~= '' and string.sub(current, 1, string.len(ARGV[3])) == ARGV[3]
if (not current) or current == ARGV[1] or same_name then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ARGV[1]}
end
return {0, current}
"""

_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not current then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def holder_id(worker_name: str, instance: str) -> str:
    return f"{worker_name}/{instance}"


def acquire(redis: Redis, account_id: int, holder: str, ttl_seconds: float) -> tuple[bool, str]:
    """Take or renew the lease; returns (acquired, current holder).

    A lease held by an earlier instance of the same worker name is taken over: owning the name means that
    instance is dead, or fenced itself before its name could expire.
    """
    same_name = holder.split("/", 1)[0] + "/"
    ok, current = redis.eval(_ACQUIRE, 1, keys.account_lease(account_id), holder, int(ttl_seconds * 1000), same_name)
    return bool(ok), current.decode() if isinstance(current, bytes) else str(current)


def renew(redis: Redis, account_ids: list[int], holder: str, ttl_seconds: float) -> list[int]:
    """Renew (or take back, if gone) every lease this holder has; returns the ids another holder has now."""
    if not account_ids:
        return []
    lost = redis.eval(
        _RENEW, len(account_ids), *[keys.account_lease(i) for i in account_ids], holder, int(ttl_seconds * 1000)
    )
    return [account_ids[int(index) - 1] for index in lost]


def release(redis: Redis, account_id: int, holder: str) -> bool:
    return bool(redis.eval(_RELEASE, 1, keys.account_lease(account_id), holder))


def holder_of(redis: Redis, account_id: int) -> str | None:
    value = redis.get(keys.account_lease(account_id))
    return value.decode() if isinstance(value, bytes) else value


def worker_of_holder(holder: str | None) -> str | None:
    return None if not holder else holder.split("/", 1)[0]
