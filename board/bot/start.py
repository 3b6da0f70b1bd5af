"""/start and /help: a short welcome and the buttons that open the Mini App (when BOARD_WEBAPP_URL is set)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from board.bot.replies import Replies, open_board
from board.service import UserRef


def build_router() -> Router:
    router = Router(name=__name__)

    async def start(message: Message, replies: Replies, me: UserRef, webapp_url: str) -> None:
        if not webapp_url:
            await replies.notice(me.id, "bot.welcome")
            await replies.notice(me.id, "bot.no_webapp")
            return
        await replies.notice(me.id, "bot.welcome", keyboard=open_board("inline"))
        # Only a Mini App opened from a keyboard button can send data back (an invitation) through the bot.
        await replies.notice(me.id, "bot.keyboard_hint", keyboard=open_board("keyboard"))

    async def help_(message: Message, replies: Replies, me: UserRef) -> None:
        await replies.notice(me.id, "bot.help")

    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    return router
