"""A plugin's own store in Redis (`worker.plugins.store.PluginStore`, `context.kv`): values, expiry, counters."""

from __future__ import annotations

import asyncio
from typing import Any

from redis import Redis

from celery_app import keys
from worker.plugins.store import PluginStore


def test_plugin_store_values_expire_and_count(redis_client: Redis, redis_url: str) -> None:
    async def scenario(redis: Redis) -> list[Any]:
        store = PluginStore(redis, "demo", 3)
        await store.set("a", "1")
        await store.set("short", "x", ttl=0.05)
        seen = [await store.get("a"), await store.get("short"), await store.incr("n"), await store.incr("n", 5)]
        await asyncio.sleep(0.15)
        seen.append(await store.get("short"))
        await store.delete("a")
        seen.append(await store.get("a"))
        await store.set("a", 2.5)
        seen.append(await store.get("a"))
        return seen

    assert asyncio.run(scenario(redis_client)) == ["1", "x", 1, 6, None, None, "2.5"]
    raw = Redis.from_url(redis_url)  # a client that does not decode answers as it did
    try:
        assert asyncio.run(scenario(raw))[:2] == ["1", "x"]
    finally:
        raw.close()
    assert redis_client.exists(keys.plugin_store("demo", 3))
