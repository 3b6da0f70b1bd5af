"""Runs the bot: long polling (or a webhook when WEBHOOK_URL is set), commands in Russian and English,
the live status watcher and the alert notifier beside it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from urllib.parse import urlsplit

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import BotCommand, BotCommandScopeDefault
from redis.asyncio import Redis as AsyncRedis

from backend.control_plane import ControlPlane
from bot.alerts import AlertNotifier
from bot.app import build_dispatcher
from bot.i18n import LanguageStore
from bot.keyboards import install_button_filter
from bot.live import StatusWatcher
from bot.mutes import MuteStore
from bot.roles_directory import RolesDirectory
from bot.services import BotServices
from bot.texts import t
from celery_app import keys
from common.redis_target import open_async_redis
from config import DEFAULT_BOT_API_SERVER, BotSettings, load_board_limits, plugins_dir

log = logging.getLogger(__name__)
COMMANDS = (
    "start",
    "workers",
    "accounts",
    "add",
    "proxies",
    "summary",
    "board",
    "admins",
    "audit",
    "mute",
    "language",
    "cancel",
)
FSM_TTL_SECONDS = 24 * 3600


def async_redis(url: str) -> AsyncRedis:
    """The bot's Redis: REDIS_URL, or the primary the sentinels name (common.redis_target), followed through a
    failover."""
    return open_async_redis(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


def fsm_storage(redis: AsyncRedis) -> RedisStorage:
    """Where the bot's forms keep their state between messages: aiogram's RedisStorage on the bot's Redis."""
    return RedisStorage(
        redis,
        key_builder=DefaultKeyBuilder(prefix=f"{keys.PREFIX}:bot:fsm"),
        state_ttl=FSM_TTL_SECONDS,
        data_ttl=FSM_TTL_SECONDS,
    )


def make_bot(settings: BotSettings) -> Bot:
    session = AiohttpSession()
    if settings.api_server != DEFAULT_BOT_API_SERVER:
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_server))
    return Bot(settings.bot_token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


def make_services(settings: BotSettings) -> BotServices:
    plane = ControlPlane(
        settings.redis_url,
        settings.database_url,
        settings.timing.offline_after,
        secret_key=lambda: settings.secret_key,
        plugins_dir=plugins_dir,
        board_limits=load_board_limits,
        owner_ids=lambda: settings.admin_ids,
    )
    return dataclasses.replace(BotServices.of(plane), sandbox=settings.sandbox)


async def register_commands(bot: Bot) -> None:
    for lang in ("ru", "en"):
        commands = [BotCommand(command=name, description=t(lang, f"cmd.{name}")) for name in COMMANDS]
        await bot.set_my_commands(commands, scope=BotCommandScopeDefault(), language_code=lang)
    # Admins whose Telegram language is neither get the Russian list (the default language).
    await bot.set_my_commands(
        [BotCommand(command=name, description=t("ru", f"cmd.{name}")) for name in COMMANDS],
        scope=BotCommandScopeDefault(),
    )


async def run_bot(settings: BotSettings) -> None:
    services = make_services(settings)
    redis = async_redis(settings.redis_url)
    storage = fsm_storage(redis)
    languages = LanguageStore(redis)
    watcher = StatusWatcher(redis)
    mutes = MuteStore(redis)
    roles = RolesDirectory.of(services.admins, settings.admin_ids)
    bot = make_bot(settings)
    install_button_filter(bot, roles)  # each admin is sent only the buttons their role may press
    dispatcher = build_dispatcher(services, storage, settings.admin_ids, languages, watcher, roles, mutes)
    me = await bot.get_me()
    log.info("bot @%s started for %d owner(s) (Bot API %s)", me.username, len(settings.admin_ids), settings.api_server)
    await register_commands(bot)
    notifier = AlertNotifier(bot, services, settings.admin_ids, languages, mutes)
    background = [asyncio.create_task(watcher.run()), asyncio.create_task(notifier.run())]
    try:
        if settings.webhook_url:
            await run_webhook(bot, dispatcher, settings)
        else:
            await bot.delete_webhook(drop_pending_updates=False)
            await dispatcher.start_polling(bot, handle_signals=True, close_bot_session=True)
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await redis.aclose()


async def run_webhook(bot: Bot, dispatcher: object, settings: BotSettings) -> None:
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    assert settings.webhook_url is not None
    secret = hashlib.sha256(settings.bot_token.encode()).hexdigest()[:32]
    path = urlsplit(settings.webhook_url).path or "/"
    app = web.Application()
    SimpleRequestHandler(dispatcher=dispatcher, bot=bot, secret_token=secret).register(app, path=path)  # type: ignore[arg-type]
    setup_application(app, dispatcher, bot=bot)  # type: ignore[arg-type]
    host, _, port = settings.webhook_listen.rpartition(":")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()  # noqa: S104 - the operator chooses WEBHOOK_LISTEN
    # Listen first, then tell Telegram where to deliver.
    await bot.set_webhook(settings.webhook_url, secret_token=secret, drop_pending_updates=False)
    log.info("webhook %s listening on %s", settings.webhook_url, settings.webhook_listen)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
