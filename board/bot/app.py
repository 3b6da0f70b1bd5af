"""Builds the board bot's dispatcher: the user gate, the routers in order, the service, the replies (through the
outbox) and the relay in its data."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import CallbackQuery, ErrorEvent
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from board.bot import chats, invites, relay, start
from board.bot.common import BoardUserMiddleware, answer, error_summary
from board.bot.relay import Relay
from board.bot.replies import Replies
from board.errors import BoardError
from board.service import BoardService, UserRef
from board.texts import t

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent, replies: Replies, lang: str = "ru", me: UserRef | None = None) -> bool:
    """A refusal becomes its text in the user's language; anything else a short notice (and a log line)."""
    error = event.exception
    key, values = "bot.unavailable", {}
    if isinstance(error, BoardError):
        key, values = f"error.{error.code}", dict(error.values)
    elif isinstance(error, RedisError | SQLAlchemyError):
        log.error("service unavailable while handling an update: %s", type(error).__name__)
    else:
        log.error("unexpected error while handling an update: %s", error_summary(error))
    update = event.update
    if update.callback_query is not None:
        await answer(update.callback_query, t(lang, key, **values))
    elif me is not None and not isinstance(error, SQLAlchemyError):
        try:
            await replies.notice(me.id, key, values)
        except SQLAlchemyError:
            log.error("could not queue the error notice: the database is unavailable")
    return True


def _fallback_router() -> Router:
    router = Router(name="board.bot.fallback")

    async def unknown_button(query: CallbackQuery, lang: str) -> None:
        await answer(query, t(lang, "bot.unknown_button"))

    router.callback_query.register(unknown_button)
    router.errors.register(on_error)
    return router


def build_dispatcher(
    service: BoardService,
    storage: BaseStorage,
    webapp_url: str = "",
    relay_: Relay | None = None,
    replies: Replies | None = None,
    **data: Any,
) -> Dispatcher:
    """`webapp_url` empty: the Mini App is not configured (/start says so). `replies` queue into the outbox
    (the board process passes one that wakes its outbox)."""
    replies = replies or (relay_.replies if relay_ is not None else Replies(service))
    dispatcher = Dispatcher(
        storage=storage,
        events_isolation=SimpleEventIsolation(),
        board=service,
        replies=replies,
        relay=relay_ or Relay(service, replies),
        webapp_url=webapp_url,
        **data,
    )
    dispatcher.update.outer_middleware(BoardUserMiddleware(service))
    dispatcher.include_routers(
        start.build_router(), invites.build_router(), chats.build_router(), relay.build_router(), _fallback_router()
    )
    return dispatcher
