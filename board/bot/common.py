"""What every board handler shares: the gate that resolves who is writing (and stops banned users), calling the
synchronous service off the event loop, a log-safe error summary, and the FSM's hashed Redis keys."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

from aiogram import BaseMiddleware
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.storage.base import KeyBuilder, StorageKey
from aiogram.types import CallbackQuery, Message, TelegramObject, Update, User

from board.service import BoardService
from board.texts import t
from common.crypto import SecretBox

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a (synchronous, database-bound) service call in a worker thread."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


async def answer(query: CallbackQuery, text: str | None = None, alert: bool = False) -> None:
    """Answer a button press (not a message: it does not go through the outbox); a failure is not fatal."""
    with contextlib.suppress(TelegramAPIError):
        await query.answer(text, show_alert=alert)


def error_summary(error: BaseException) -> str:
    """The error's type and where it was raised, without its message: messages (a Bot API answer, a validation
    error) may quote Telegram ids or what people wrote, and neither may reach the log."""
    frames = "".join(traceback.format_tb(error.__traceback__)).rstrip()
    return f"{type(error).__name__}\n{frames}" if frames else type(error).__name__


def _sender(update: Update) -> tuple[User | None, Message | CallbackQuery | None]:
    if update.message is not None:
        return update.message.from_user, update.message
    if update.edited_message is not None:
        return update.edited_message.from_user, update.edited_message
    if update.callback_query is not None:
        return update.callback_query.from_user, update.callback_query
    return None, None


class BoardUserMiddleware(BaseMiddleware):
    """Every update from a private chat gets `me` (the board user) and `lang`; banned users get one line."""

    def __init__(self, service: BoardService) -> None:
        self.service = service

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        user, source = _sender(event)
        if user is None or source is None or user.is_bot:
            return None
        if isinstance(source, Message) and source.chat.type != ChatType.PRIVATE:
            return None  # the board talks to people one to one only
        me = await call(self.service.user, user.id, user.language_code)
        data["me"] = me
        data["lang"] = me.lang
        if me.banned:
            if isinstance(source, CallbackQuery):
                await answer(source, t(me.lang, "bot.banned"), alert=True)
            elif event.message is not None:
                await data["replies"].notice(me.id, "bot.banned")
            return None
        return await handler(event, data)


class HashedKeyBuilder(KeyBuilder):
    """Redis keys of the board's FSM name a person by a keyed hash, never by their Telegram id."""

    def __init__(self, prefix: str, box: SecretBox) -> None:
        self.prefix = prefix
        self.box = box

    def build(self, key: StorageKey, part: Literal["data", "state", "lock"] | None = None) -> str:
        who = self.box.lookup(
            f"board-fsm:{key.bot_id}:{key.chat_id}:{key.user_id}:{key.thread_id}:{key.business_connection_id}:"
            f"{key.destiny}"
        )[:40]
        return ":".join(piece for piece in (self.prefix, who, part) if piece)
