"""Each admin's alert mute (`/mute 2h`, `/mute off`): a key in Redis holding until when, expiring then by itself,
so a mute ends with no one to remember it (and survives a bot restart)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from redis.asyncio import Redis

from celery_app import keys

_KEY = f"{keys.PREFIX}:bot:mute:" + "{user_id}"
_SPAN = re.compile(r"^(\d{1,4})\s*(m|min|h|d|м|мин|ч|д)$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "min": 60, "м": 60, "мин": 60, "h": 3600, "ч": 3600, "d": 86400, "д": 86400}
MAX_SECONDS = 30 * 86400


def parse_span(text: str) -> int | None:
    """Seconds of `30m`, `2h`, `1d` (or `2ч`, `1д`), at most 30 days; None if it is not such a span."""
    match = _SPAN.match(text.strip())
    if match is None:
        return None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    return seconds if 0 < seconds <= MAX_SECONDS else None


class MuteStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def mute(self, user_id: int, seconds: int) -> float:
        """Mute for `seconds`; returns until when (a Unix time)."""
        until = time.time() + seconds
        await self.redis.set(_KEY.format(user_id=user_id), f"{until:.0f}", ex=seconds)
        return until

    async def unmute(self, user_id: int) -> bool:
        return bool(await self.redis.delete(_KEY.format(user_id=user_id)))

    async def until(self, user_id: int) -> float | None:
        """Until when `user_id` is muted (a Unix time), or None."""
        value = await self.redis.get(_KEY.format(user_id=user_id))
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return float(text) if text.replace(".", "", 1).isdigit() else None

    async def muted(self, user_ids: Iterable[int]) -> set[int]:
        ids = list(user_ids)
        if not ids:
            return set()
        values = await self.redis.mget([_KEY.format(user_id=i) for i in ids])
        return {user_id for user_id, value in zip(ids, values, strict=True) if value is not None}
