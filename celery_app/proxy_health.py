"""Pool proxies' health as workers report it, and which pool proxy each of a worker's accounts runs through.

A worker checks every pool proxy its running accounts use (`worker.proxy_check`: a real connection through
the proxy to the account's data centre, timed) every PROXY_CHECK_SECONDS, and any proxy the control plane
asks about (`TaskName.CHECK_PROXIES`). Each check lands in Redis:

- `proxy_health(id)`: a hash, worker name -> JSON `{"ok", "ms", "err", "fails", "at", "every"}` — the
  latest check of that proxy by that worker: success, latency in milliseconds, an error code
  (`PROBE_ERRORS`), how many checks in a row failed there, when (Redis server time) and the worker's
  check interval (a report older than a few intervals is stale);
- `proxy_usage(worker)`: JSON `{"at", "every", "accounts": {account id: proxy id or null}}` — the pool proxy
  each account running on the worker actually uses (the backend restarts one whose pin has changed).

No URL, host or credential is ever written here: proxies are named by their pool id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from redis import Redis

from celery_app import keys

# What a failed check says, as a code (never the proxy's or the OS's words: they may name hosts or users).
PROBE_ERRORS = {
    "refused": "the proxy refused the connection",
    "timed_out": "no answer in time",
    "auth_failed": "the proxy refused the credentials",
    "handshake": "the proxy hung up during its handshake (wrong credentials?)",
    "proxy_refused": "the proxy could not reach the data centre",
    "bad_reply": "the answer through the proxy was not Telegram's",
    "unreachable": "the proxy's address cannot be reached",
    "unreadable": "the proxy's URL cannot be decrypted or read",
    "error": "the check failed",
}
STALE_INTERVALS = 3  # a report older than this many check intervals (plus a margin) is not believed
STALE_MARGIN_SECONDS = 5.0
KEY_TTL_SECONDS = 7 * 24 * 3600


def proxy_health(proxy_id: int) -> str:
    """Hash: worker name -> JSON of that worker's latest check of this proxy (see the module)."""
    return f"{keys.PREFIX}:proxy:{proxy_id}:health"


def proxy_usage(worker: str) -> str:
    """String: JSON of the pool proxy each account running on the worker uses (see the module)."""
    return f"{keys.PREFIX}:worker:{worker}:proxy_usage"


@dataclass(frozen=True)
class ProxyCheck:
    """One worker's latest check of one proxy."""

    worker: str
    ok: bool
    latency_ms: float | None
    error: str
    failures: int
    at: float
    every: float

    def fresh(self, now: float) -> bool:
        return now - self.at <= STALE_INTERVALS * self.every + STALE_MARGIN_SECONDS

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "ms": self.latency_ms,
                "err": self.error,
                "fails": self.failures,
                "at": self.at,
                "every": self.every,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, worker: str, raw: str | bytes | None) -> ProxyCheck | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            latency = data.get("ms")
            return cls(
                worker,
                bool(data["ok"]),
                float(latency) if latency is not None else None,
                str(data.get("err") or "") if str(data.get("err") or "") in PROBE_ERRORS else "error",
                max(0, int(data.get("fails") or 0)),
                float(data["at"]),
                max(0.1, float(data.get("every") or 60.0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def write_checks(redis: Redis, checks: Mapping[int, ProxyCheck]) -> None:
    """Record this worker's latest checks (proxy id -> check), in one round trip."""
    if not checks:
        return
    pipe = redis.pipeline(transaction=False)
    for proxy_id, check in checks.items():
        pipe.hset(proxy_health(proxy_id), check.worker, check.to_json())
        pipe.expire(proxy_health(proxy_id), KEY_TTL_SECONDS)
    pipe.execute()


def read_checks(redis: Redis, proxy_ids: list[int]) -> dict[int, list[ProxyCheck]]:
    """Every worker's latest check of each proxy (those checked at all), in one round trip."""
    if not proxy_ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for proxy_id in proxy_ids:
        pipe.hgetall(proxy_health(proxy_id))
    found: dict[int, list[ProxyCheck]] = {}
    for proxy_id, entries in zip(proxy_ids, pipe.execute(), strict=True):
        checks = [ProxyCheck.decode(_text(worker), raw) for worker, raw in (entries or {}).items()]
        usable = [check for check in checks if check is not None]
        if usable:
            found[proxy_id] = sorted(usable, key=lambda check: check.worker)
    return found


def forget_proxy(redis: Redis, proxy_id: int) -> None:
    redis.delete(proxy_health(proxy_id))


@dataclass(frozen=True)
class ProxyUsage:
    """Which pool proxy each account running on a worker uses (None: none, or one outside the pool)."""

    worker: str
    at: float
    every: float
    accounts: dict[int, int | None]

    def fresh(self, now: float) -> bool:
        return now - self.at <= STALE_INTERVALS * self.every + STALE_MARGIN_SECONDS


def write_usage(redis: Redis, worker: str, at: float, every: float, accounts: Mapping[int, int | None]) -> None:
    document = {"at": at, "every": every, "accounts": {str(k): v for k, v in sorted(accounts.items())}}
    redis.set(proxy_usage(worker), json.dumps(document, separators=(",", ":")), ex=KEY_TTL_SECONDS)


def read_usage(redis: Redis, workers: list[str]) -> dict[str, ProxyUsage]:
    if not workers:
        return {}
    raws = redis.mget([proxy_usage(worker) for worker in workers])
    found: dict[str, ProxyUsage] = {}
    for worker, raw in zip(workers, raws, strict=True):
        if raw is None:
            continue
        try:
            data = json.loads(raw)
            accounts = {
                int(k): (int(v) if v is not None else None) for k, v in dict(data.get("accounts") or {}).items()
            }
            found[worker] = ProxyUsage(worker, float(data["at"]), max(0.1, float(data.get("every") or 60)), accounts)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return found
