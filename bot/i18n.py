"""Each admin's language: chosen in the bot, else guessed from their Telegram language; kept in Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.texts import LANGUAGES, language_for
from celery_app import keys

_KEY = f"{keys.PREFIX}:bot:lang:" + "{user_id}"


class LanguageStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._cache: dict[int, str] = {}

    async def get(self, user_id: int, telegram_code: str | None) -> str:
        if user_id in self._cache:
            return self._cache[user_id]
        stored = await self.redis.get(_KEY.format(user_id=user_id))
        lang = stored.decode() if isinstance(stored, bytes) else stored
        if lang not in LANGUAGES:
            lang = language_for(telegram_code)
        self._cache[user_id] = lang
        return lang

    async def set(self, user_id: int, lang: str) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"unsupported language {lang!r}")
        await self.redis.set(_KEY.format(user_id=user_id), lang)
        self._cache[user_id] = lang

    async def for_alerts(self, user_id: int) -> str:
        """The language to alert an admin in (one who never wrote to the bot gets the default)."""
        return await self.get(user_id, None)
