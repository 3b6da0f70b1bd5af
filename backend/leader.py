"""The backend's leader lock: of several backends, only the one holding it acts; the others stand by and one
takes over when the holder stops renewing it (a Redis key with expiry, set and released by compare-and-set)."""

from __future__ import annotations

import uuid

from redis import Redis

from celery_app import keys

LEADER_TTL_SECONDS = 10.0

_HOLD = """
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLock:
    """A Redis lock with expiry that the acting backend renews; a standby takes over when it lapses."""

    def __init__(self, redis: Redis, ttl: float = LEADER_TTL_SECONDS, key: str = keys.BACKEND_LEADER) -> None:
        self.redis = redis
        self.ttl = ttl
        self.key = key
        self.identity = uuid.uuid4().hex

    def hold(self) -> bool:
        return bool(self.redis.eval(_HOLD, 1, self.key, self.identity, int(self.ttl * 1000)))

    def release(self) -> None:
        self.redis.eval(_RELEASE, 1, self.key, self.identity)
