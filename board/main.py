"""Runs the board in one process: the database and Redis, the bot (ordered long polling, its FSM and pending
choices in Redis), the outbox every message leaves through, the Mini App and its API on BOARD_LISTEN, the chat
menu button, and housekeeping (expiry every minute, history and settled outbox rows hourly).

SIGTERM (or Ctrl-C) stops it cleanly: no new updates are fetched, the ones being handled finish, albums being
collected are queued, the handled updates are confirmed to Telegram, and the sends in flight finish; what is
still queued stays in the database for the next start. Everything a restart needs is in the database and
Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import BotCommand, BotCommandScopeDefault, MenuButtonWebApp, WebAppInfo
from aiohttp import web
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from board.bot.app import build_dispatcher
from board.bot.common import HashedKeyBuilder
from board.bot.outbox import Outbox
from board.bot.polling import OrderedPolling
from board.bot.relay import Relay
from board.bot.render import Renderer
from board.bot.replies import Replies
from board.service import BoardService
from board.texts import t
from board.web.serving import make_runner
from common.crypto import SecretBox
from common.redis_target import describe_redis_error, open_async_redis
from config import DEFAULT_BOT_API_SERVER, BoardSettings, mask_url

log = logging.getLogger(__name__)

FSM_PREFIX = "fleet:board:fsm"  # the board's corner of the fleet's Redis namespace (`celery_app.keys.PREFIX`)
FSM_TTL_SECONDS = 24 * 3600  # a message waiting for its chat to be chosen is forgotten after a day
PRUNE_EVERY_SECONDS = 3600.0
EXPIRE_EVERY_SECONDS = 60.0
COMMANDS = ("start", "mychats", "endchat", "block", "report")


class BoardUnavailable(RuntimeError):
    """Redis or the database cannot be reached; the message says which and where."""


def make_bot(settings: BoardSettings) -> Bot:
    session = AiohttpSession()
    if settings.api_server != DEFAULT_BOT_API_SERVER:
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_server))
    return Bot(settings.bot_token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


def open_service(settings: BoardSettings) -> tuple[Engine, BoardService]:
    """The database (schema brought up to date) and the board's rules over it."""
    from database.engine import open_database

    try:
        engine, sessions = open_database(settings.database_url)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise BoardUnavailable(f"database unreachable at {mask_url(settings.database_url)}: {reason}") from None
    return engine, BoardService(sessions, SecretBox(settings.secret_key), settings.limits)


async def open_redis(url: str) -> AsyncRedis:
    redis = open_async_redis(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
    try:
        await redis.ping()
    except RedisError as error:
        await redis.aclose()
        raise BoardUnavailable(f"Redis unreachable at {mask_url(url)}: {describe_redis_error(error, url)}") from None
    return redis


def make_web_app(service: BoardService, outbox: Outbox, settings: BoardSettings) -> web.Application:
    """The Mini App and its API (`board.web`); the first messages it stores wake the bot's outbox."""
    try:
        from board.web import create_web_app
    except ModuleNotFoundError as error:
        if error.name != "board.web":
            raise
        log.warning("board.web is not installed: serving only /healthz")
        app = web.Application()
        app.router.add_get("/healthz", lambda _request: web.json_response({"ok": True}))
        return app
    return create_web_app(service, settings.bot_token, on_enqueued=outbox.wake)


async def register_commands(bot: Bot) -> None:
    for lang in ("ru", "en"):
        commands = [BotCommand(command=name, description=t(lang, f"cmd.{name}")) for name in COMMANDS]
        await bot.set_my_commands(commands, scope=BotCommandScopeDefault(), language_code=lang)
    await bot.set_my_commands(
        [BotCommand(command=name, description=t("ru", f"cmd.{name}")) for name in COMMANDS],
        scope=BotCommandScopeDefault(),
    )


async def set_menu_button(bot: Bot, webapp_url: str) -> None:
    """The button beside the message field opens the Mini App (every chat with the bot)."""
    if not webapp_url:
        return
    button = MenuButtonWebApp(text=t("ru", "bot.menu_button"), web_app=WebAppInfo(url=webapp_url))
    await bot.set_chat_menu_button(menu_button=button)


async def prune_forever(service: BoardService, every: float = PRUNE_EVERY_SECONDS) -> None:
    """Forget relayed messages older than BOARD_HISTORY_DAYS and settled outbox rows, hourly; mark expired ads
    every minute."""
    next_prune = 0.0
    while True:
        try:
            await asyncio.to_thread(service.expire_ads)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + every
                removed = await asyncio.to_thread(service.prune_history)
                if removed:
                    log.info("pruned %d relayed message(s) past the history limit", removed)
                await asyncio.to_thread(service.prune_outbox)
        except (SQLAlchemyError, OSError) as error:
            log.warning("board housekeeping failed: %s", type(error).__name__)
        await asyncio.sleep(EXPIRE_EVERY_SECONDS)


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def run_board(settings: BoardSettings) -> None:
    engine, service = open_service(settings)
    redis = await open_redis(settings.redis_url)
    storage = RedisStorage(
        redis,
        key_builder=HashedKeyBuilder(FSM_PREFIX, service.box),
        state_ttl=FSM_TTL_SECONDS,
        data_ttl=FSM_TTL_SECONDS,
    )
    bot = make_bot(settings)
    outbox = Outbox(service, bot, Renderer(settings.webapp_url), rate=settings.send_rate)
    replies = Replies(service, outbox.wake)
    relay = Relay(service, replies)
    dispatcher = build_dispatcher(service, storage, settings.webapp_url, relay, replies)
    polling = OrderedPolling(dispatcher, bot, allowed_updates=dispatcher.resolve_used_update_types())
    runner: web.AppRunner | None = None
    pruner: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, polling.stop)
    try:
        me = await bot.get_me()
        log.info("board bot @%s started (Bot API %s)", me.username, settings.api_server)
        await register_commands(bot)
        await set_menu_button(bot, settings.webapp_url)
        if not settings.webapp_url:
            log.warning("BOARD_WEBAPP_URL is not set: /start cannot offer the Mini App")
        outbox.start()
        runner = make_runner(make_web_app(service, outbox, settings))
        await runner.setup()
        host, port = _host_port(settings.listen)
        await web.TCPSite(runner, host, port).start()
        log.info("board web app listening on %s", settings.listen)
        pruner = asyncio.create_task(prune_forever(service))
        await bot.delete_webhook(drop_pending_updates=False)
        await polling.run()
        log.info("board stopping: finishing the updates in hand")
        await polling.drain(relay.settle)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if pruner is not None:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
        if runner is not None:
            await runner.cleanup()
        await outbox.stop()
        await bot.session.close()
        await redis.aclose()
        engine.dispose()
        log.info("board stopped")
