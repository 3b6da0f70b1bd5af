"""Helpers every handler uses: showing a screen (edit in place or reply), editing a sent one, who acts."""

from __future__ import annotations

import contextlib

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, User


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
