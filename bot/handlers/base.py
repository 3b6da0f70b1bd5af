"""Helpers every handler uses: the router spec, showing a screen (edit in place or reply), who acts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, User

Handler = Callable[..., Any]


class RouterSpec:
    """Handlers declared with the usual decorators, built into a fresh `Router` for each dispatcher
    (an aiogram router can belong to one dispatcher only; tests and restarts build several)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: list[tuple[str, Handler, tuple[Any, ...]]] = []

    def _register(self, observer: str, *filters: Any) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self._entries.append((observer, handler, filters))
            return handler

        return decorate

    def message(self, *filters: Any) -> Callable[[Handler], Handler]:
        return self._register("message", *filters)

    def callback_query(self, *filters: Any) -> Callable[[Handler], Handler]:
        return self._register("callback_query", *filters)

    def errors(self, *filters: Any) -> Callable[[Handler], Handler]:
        return self._register("errors", *filters)

    def build(self) -> Router:
        router = Router(name=self.name)
        for observer, handler, filters in self._entries:
            getattr(router, observer).register(handler, *filters)
        return router


async def show(target: Message | CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Edit the tapped message in place, or answer a command with a new message."""
    if isinstance(target, CallbackQuery):
        message = target.message
        if isinstance(message, Message):
            with contextlib.suppress(TelegramBadRequest):  # "message is not modified" on a refresh
                await message.edit_text(text, reply_markup=markup)
        else:
            await target.bot.send_message(target.from_user.id, text, reply_markup=markup)  # type: ignore[union-attr]
        with contextlib.suppress(TelegramBadRequest):
            await target.answer()
        return
    await target.answer(text, reply_markup=markup)


async def edit(message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Edit a message the bot sent (a follow-up's screen); unchanged or gone meanwhile is not an error."""
    with contextlib.suppress(TelegramBadRequest):
        await message.edit_text(text, reply_markup=markup)


def actor(user: User | None) -> str:
    return f"bot:{user.id}" if user else "bot"
