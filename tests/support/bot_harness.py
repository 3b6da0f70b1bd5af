"""The real dispatcher, in-process, over a recording session: updates go in with `Dispatcher.feed_update`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.enums import ParseMode
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import Update

from backend.control_plane import ControlPlane
from bot.alerts import AlertNotifier
from bot.app import build_dispatcher
from bot.i18n import LanguageStore
from bot.keyboards import install_button_filter
from bot.live import StatusWatcher
from bot.main import async_redis
from bot.mutes import MuteStore
from bot.roles_directory import RolesDirectory
from bot.services import BotServices
from celery_app import keys
from tests.support.bot_api import TOKEN, AdminChat, BotApiCore, RecordingSession
from tests.support.stack import TEST_SECRET_KEY

OFFLINE_AFTER = 2.0


def make_services(
    redis_url: str, database_url: str, admin_ids: frozenset[int] = frozenset(), offline_after: float = OFFLINE_AFTER
) -> BotServices:
    """The bot's services as `bot.main` builds them (`admin_ids` the owners), but for the board, operations and
    plugins (the tests that need them attach them)."""
    plane = ControlPlane(
        redis_url, database_url, offline_after, secret_key=lambda: TEST_SECRET_KEY, owner_ids=lambda: admin_ids
    )
    return BotServices.of(plane, board=False, operations=False, plugins=False)


class BotHarness:
    def __init__(
        self,
        redis_url: str,
        database_url: str,
        admin_ids: frozenset[int],
        core: BotApiCore | None = None,
        offline_after: float = OFFLINE_AFTER,
    ) -> None:
        """`offline_after`: how long a worker's silence reads as online (short, for the tests of going offline;
        a test whose simulated worker beats once gives it longer, so a busy machine cannot make it offline)."""
        self.core = core or BotApiCore()
        self.services = make_services(redis_url, database_url, admin_ids, offline_after)
        self.redis_url = redis_url
        self.admin_ids = admin_ids
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self._setup())

    def _run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _setup(self) -> None:
        self.redis = async_redis(self.redis_url)
        storage = RedisStorage(self.redis, key_builder=DefaultKeyBuilder(prefix=f"{keys.PREFIX}:bot:fsm"))
        self.languages = LanguageStore(self.redis)
        self.watcher = StatusWatcher(self.redis)
        self.mutes = MuteStore(self.redis)
        self.roles = RolesDirectory.of(self.services.admins, self.admin_ids)
        self.bot = Bot(
            TOKEN, session=RecordingSession(self.core), default=DefaultBotProperties(parse_mode=ParseMode.HTML)
        )
        install_button_filter(self.bot, self.roles)  # as bot.main does: each admin sees what their role may press
        self.dispatcher = build_dispatcher(
            self.services, storage, self.admin_ids, self.languages, self.watcher, self.roles, self.mutes
        )
        self.notifier = AlertNotifier(self.bot, self.services, self.admin_ids, self.languages, self.mutes)
        self._watch_task = asyncio.create_task(self.watcher.run())

    def deliver(self, update: dict[str, Any]) -> None:
        """Feed one update, as polling would: in its own task, not waiting for the handler."""
        full = self.core.push(update)
        self.core.updates.remove(full)

        async def feed() -> None:
            await self.dispatcher.feed_update(self.bot, Update.model_validate(full, context={"bot": self.bot}))

        asyncio.run_coroutine_threadsafe(feed(), self.loop)

    def chat(self, user_id: int, language: str = "ru") -> AdminChat:
        return AdminChat(self.core, self.deliver, user_id, language)

    def poll_alerts(self) -> int:
        return int(self._run(self.notifier.poll_once()))

    def close(self) -> None:
        async def shutdown() -> None:
            self._watch_task.cancel()
            await self.redis.aclose()

        self._run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
