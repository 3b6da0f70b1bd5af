"""/start and /help: a short welcome and the buttons that open the Mini App (when BOARD_WEBAPP_URL is set)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from board.bot.keyboards import open_board_inline, open_board_keyboard
from board.texts import t


def build_router() -> Router:
    router = Router(name=__name__)

    async def start(message: Message, lang: str, webapp_url: str) -> None:
        if not webapp_url:
            await message.answer(t(lang, "bot.welcome"))
            await message.answer(t(lang, "bot.no_webapp"))
            return
        await message.answer(t(lang, "bot.welcome"), reply_markup=open_board_inline(lang, webapp_url))
        # Only a Mini App opened from a keyboard button can send data back (an invitation) through the bot.
        await message.answer(t(lang, "bot.keyboard_hint"), reply_markup=open_board_keyboard(lang, webapp_url))

    async def help_(message: Message, lang: str) -> None:
        await message.answer(t(lang, "bot.help"))

    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    return router
