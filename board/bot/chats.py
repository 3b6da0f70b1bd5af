"""Chat commands: /mychats lists the active chats; /endchat, /block and /report act on one chat — the chat of the
message replied to, the only chat, or one picked from buttons. The partner is told when a chat ends."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from board.bot.callbacks import ChatAction, ChatButton
from board.bot.common import call, notify, partner_label
from board.bot.keyboards import chat_chooser
from board.service import BoardService, EndedChat, UserRef
from board.texts import t
from database.board_models import REASON_MAX, ReportTarget

CHOOSER_TEXT = {
    ChatAction.END: "chat.choose_end",
    ChatAction.BLOCK: "chat.choose_block",
    ChatAction.REPORT: "chat.choose_report",
}


async def _tell_partner(bot: Bot, ended: EndedChat) -> None:
    lang = ended.partner.lang
    text = t(lang, "chat.ended_by_partner", partner=partner_label(lang, ended.partner_alias, ended.ad_title))
    await notify(bot, ended.partner.tg_id, text)


async def perform(
    action: ChatAction, bot: Bot, board: BoardService, me: UserRef, lang: str, my_chat: int, chat_id: str, reason: str
) -> None:
    """End, block or report one chat; the one acting is answered in `my_chat`."""
    if action is ChatAction.END:
        ended = await call(board.end_chat, me, chat_id)
        label = partner_label(lang, ended.alias, ended.ad_title)
        await notify(bot, my_chat, t(lang, "chat.ended_by_you", partner=label))
        await _tell_partner(bot, ended)
    elif action is ChatAction.BLOCK:
        await call(board.chat_side, me, chat_id)  # a button of an ended chat changes nothing
        ended = await call(board.block, me, chat_id)
        await notify(bot, my_chat, t(lang, "chat.blocked", partner=partner_label(lang, ended.alias, ended.ad_title)))
        await _tell_partner(bot, ended)
    elif action is ChatAction.REPORT:
        side = await call(board.chat_side, me, chat_id)
        await call(board.report, me, ReportTarget.CHAT, chat_id, reason[:REASON_MAX])
        await notify(bot, my_chat, t(lang, "chat.reported", partner=partner_label(lang, side.alias, side.ad_title)))


def build_router() -> Router:
    router = Router(name=__name__)

    async def my_chats(message: Message, board: BoardService, me: UserRef, lang: str) -> None:
        chats = await call(board.active_chats, me)
        if not chats:
            await message.answer(t(lang, "chat.none"))
            return
        lines = "\n".join("• " + partner_label(lang, side.alias, side.ad_title) for side in chats)
        await message.answer(t(lang, "chat.list", chats=lines))

    def on_command(action: ChatAction) -> Callable[..., Awaitable[None]]:
        async def handler(
            message: Message, command: CommandObject, bot: Bot, board: BoardService, me: UserRef, lang: str
        ) -> None:
            chats = await call(board.active_chats, me)
            if not chats:
                await message.answer(t(lang, "chat.none"))
                return
            target = None
            if message.reply_to_message is not None:
                replied = await call(board.chat_of_reply, me, message.reply_to_message.message_id)
                if replied is not None:
                    target = next((side for side in chats if side.chat_id == replied), None)
                    if target is None:  # a message of a chat that has ended: never act on another one
                        await message.answer(t(lang, "error.chat_ended"))
                        return
            if target is None and len(chats) == 1:
                target = chats[0]
            if target is None:
                await message.answer(t(lang, CHOOSER_TEXT[action]), reply_markup=chat_chooser(lang, chats, action))
                return
            await perform(action, bot, board, me, lang, message.chat.id, target.chat_id, command.args or "")

        return handler

    async def chosen(
        query: CallbackQuery, callback_data: ChatButton, bot: Bot, board: BoardService, me: UserRef, lang: str
    ) -> None:
        await perform(callback_data.action, bot, board, me, lang, query.from_user.id, callback_data.id, "")
        if isinstance(query.message, Message):
            with contextlib.suppress(TelegramAPIError):
                await query.message.edit_reply_markup(reply_markup=None)
        await query.answer()

    router.message.register(my_chats, Command("mychats"))
    router.message.register(on_command(ChatAction.END), Command("endchat"))
    router.message.register(on_command(ChatAction.BLOCK), Command("block"))
    router.message.register(on_command(ChatAction.REPORT), Command("report"))
    router.callback_query.register(chosen, ChatButton.filter(F.action != ChatAction.SEND))
    return router
