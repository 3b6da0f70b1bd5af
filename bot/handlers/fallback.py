"""Last router: stale or forged buttons and messages nobody else took get a short, harmless answer."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from bot.texts import t


async def unknown_button(query: CallbackQuery, lang: str) -> None:
    await query.answer(t(lang, "unknown_button"), show_alert=False)


async def unknown_message(message: Message, lang: str) -> None:
    await message.answer(t(lang, "unknown_input"))


def build_router() -> Router:
    """Include it last: its handlers take anything."""
    router = Router(name=__name__)
    router.callback_query.register(unknown_button)
    router.message.register(unknown_message)
    return router
