"""Last router: stale or forged buttons and messages nobody else took get a short, harmless answer."""

from __future__ import annotations

from aiogram.types import CallbackQuery, Message

from bot.handlers.base import RouterSpec
from bot.texts import t

router = RouterSpec(__name__)


@router.callback_query()
async def unknown_button(query: CallbackQuery, lang: str) -> None:
    await query.answer(t(lang, "unknown_button"), show_alert=False)


@router.message()
async def unknown_message(message: Message, lang: str) -> None:
    await message.answer(t(lang, "unknown_input"))
