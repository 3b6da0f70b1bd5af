"""Builds the board bot's dispatcher: the user gate, the routers in order, the service and relay in its data."""

from __future__ import annotations

import contextlib
import logging

from aiogram import Dispatcher, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import CallbackQuery, ErrorEvent
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from board.bot import chats, invites, relay, start
from board.bot.common import BoardUserMiddleware, error_summary
from board.bot.relay import Relay
from board.errors import BoardError
from board.service import BoardService
from board.texts import t

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent, lang: str = "ru") -> bool:
    """A refusal becomes its text in the user's language; anything else a short notice (and a log line)."""
    error = event.exception
    if isinstance(error, BoardError):
        text = t(lang, f"error.{error.code}", **error.values)
    elif isinstance(error, RedisError | SQLAlchemyError):
        log.error("service unavailable while handling an update: %s", type(error).__name__)
        text = t(lang, "bot.unavailable")
    else:
        log.error("unexpected error while handling an update: %s", error_summary(error))
        text = t(lang, "bot.unavailable")
    update = event.update
    with contextlib.suppress(TelegramAPIError):
        if update.callback_query is not None:
            await update.callback_query.answer(text)
        elif update.message is not None:
            await update.message.answer(text)
    return True


def _fallback_router() -> Router:
    router = Router(name="board.bot.fallback")

    async def unknown_button(query: CallbackQuery, lang: str) -> None:
        await query.answer(t(lang, "bot.unknown_button"))

    router.callback_query.register(unknown_button)
    router.errors.register(on_error)
    return router


def build_dispatcher(
    service: BoardService, storage: BaseStorage, webapp_url: str = "", relay_: Relay | None = None
) -> Dispatcher:
    """`webapp_url` empty: the Mini App is not configured (/start says so)."""
    dispatcher = Dispatcher(
        storage=storage,
        events_isolation=SimpleEventIsolation(),
        board=service,
        relay=relay_ or Relay(service),
        webapp_url=webapp_url,
    )
    dispatcher.update.outer_middleware(BoardUserMiddleware(service))
    dispatcher.include_routers(
        start.build_router(), invites.build_router(), chats.build_router(), relay.build_router(), _fallback_router()
    )
    return dispatcher
