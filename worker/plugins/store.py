"""`PluginStore`: a plugin's own strings in Redis for one account (`context.kv`), with optional expiry.

Everything lives in one hash per plugin and account (`keys.plugin_store`); it survives restarts and moves to
another worker. The calls are async and run in the loop's executor, so a plugin's loop never waits on Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis import Redis

from celery_app import keys

MAX_KV_KEY = 256  # characters in a key

_KV_GET = """
local expiry = redis.call('HGET', KEYS[1], ARGV[2])
if expiry then
  local t = redis.call('TIME')
  if tonumber(expiry) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
    redis.call('HDEL', KEYS[1], ARGV[1], ARGV[2])
    return false
  end
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""

_KV_SET = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], ARGV[2], now + tonumber(ARGV[4]))
end
return 1
"""

_KV_INCR = """
local expiry = redis.call('HGET', KEYS[1], ARGV[2])
if expiry then
  local t = redis.call('TIME')
  if tonumber(expiry) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
    redis.call('HDEL', KEYS[1], ARGV[1], ARGV[2])
  end
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[3])
"""

_EXPIRY = "\x00expires:"


class PluginStore:
    """`context.kv`: a plugin's own strings in Redis for one account (`keys.plugin_store`), async.

    Everything lives in one hash; a value set with a `ttl` (seconds) reads as absent once it has expired (the
    expiry is kept in a hidden field, checked with Redis's clock). Calls run in the loop's executor.
    """

    def __init__(self, redis: Redis, plugin: str, account_id: int) -> None:
        self._redis = redis
        self._key = keys.plugin_store(plugin, account_id)

    @staticmethod
    def _check(key: str) -> str:
        if not isinstance(key, str) or not key or len(key) > MAX_KV_KEY or key.startswith("\x00"):
            raise ValueError(f"a kv key must be a non-empty string of at most {MAX_KV_KEY} characters")
        return key

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def _eval(self, script: str, *args: Any) -> Any:
        return self._redis.eval(script, 1, self._key, *args)

    async def get(self, key: str) -> str | None:
        value = await self._run(self._eval, _KV_GET, self._check(key), _EXPIRY + key)
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str | int | float, ttl: float | None = None) -> None:
        if ttl is not None and not ttl > 0:
            raise ValueError("ttl must be a positive number of seconds (or None: no expiry)")
        expiry = "" if ttl is None else str(max(1, int(ttl * 1000)))
        await self._run(self._eval, _KV_SET, self._check(key), _EXPIRY + key, str(value), expiry)

    async def delete(self, key: str) -> None:
        await self._run(self._redis.hdel, self._key, self._check(key), _EXPIRY + key)

    async def incr(self, key: str, amount: int = 1) -> int:
        return int(await self._run(self._eval, _KV_INCR, self._check(key), _EXPIRY + key, int(amount)))
