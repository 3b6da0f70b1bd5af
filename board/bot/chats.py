"""Chat commands: /mychats lists the active chats; /endchat, /block and /report act on one chat — the chat of the
message replied to, the only chat, or one picked from buttons. The partner is told when a chat ends (the
service queues that in the same transaction)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from board.bot.callbacks import ChatAction, ChatButton
from board.bot.common import answer, call
from board.bot.replies import Replies, chooser
from board.service import BoardService, UserRef
from board.services.outbox import partner
from database.board_models import REASON_MAX, ReportTarget

CHOOSER_TEXT = {
    ChatAction.END: "chat.choose_end",
    ChatAction.BLOCK: "chat.choose_block",
    ChatAction.REPORT: "chat.choose_report",
}


async def perform(
    action: ChatAction, board: BoardService, replies: Replies, me: UserRef, chat_id: str, reason: str
) -> None:
    """End, block or report one chat; the one acting is answered in their chat with the bot."""
    if action is ChatAction.END:
        ended = await call(board.end_chat, me, chat_id)
        await replies.notice(me.id, "chat.ended_by_you", {"partner": partner(ended.alias, ended.ad_title)})
    elif action is ChatAction.BLOCK:
        ended = await call(board.block, me, chat_id)
        await replies.notice(me.id, "chat.blocked", {"partner": partner(ended.alias, ended.ad_title)})
    elif action is ChatAction.REPORT:
        side = await call(board.chat_side, me, chat_id)
        await call(board.report, me, ReportTarget.CHAT, chat_id, reason[:REASON_MAX])
        await replies.notice(me.id, "chat.reported", {"partner": partner(side.alias, side.ad_title)})


def build_router() -> Router:
    router = Router(name=__name__)

    async def my_chats(message: Message, board: BoardService, replies: Replies, me: UserRef) -> None:
        chats = await call(board.active_chats, me)
        if not chats:
            await replies.notice(me.id, "chat.none")
            return
        await replies.notice(me.id, "chat.list", {"chats": [partner(side.alias, side.ad_title) for side in chats]})

    def on_command(action: ChatAction) -> Callable[..., Awaitable[None]]:
        async def handler(
            message: Message, command: CommandObject, board: BoardService, replies: Replies, me: UserRef
        ) -> None:
            chats = await call(board.active_chats, me)
            if not chats:
                await replies.notice(me.id, "chat.none")
                return
            target = None
            if message.reply_to_message is not None:
                replied = await call(board.chat_of_reply, me, message.reply_to_message.message_id)
                if replied is not None:
                    target = next((side for side in chats if side.chat_id == replied), None)
                    if target is None:  # a message of a chat that has ended: never act on another one
                        await replies.notice(me.id, "error.chat_ended")
                        return
            if target is None and len(chats) == 1:
                target = chats[0]
            if target is None:
                choices = [(side.chat_id, side.alias, side.ad_title) for side in chats]
                await replies.notice(me.id, CHOOSER_TEXT[action], keyboard=chooser(action.value, choices))
                return
            await perform(action, board, replies, me, target.chat_id, command.args or "")

        return handler

    async def chosen(
        query: CallbackQuery, callback_data: ChatButton, board: BoardService, replies: Replies, me: UserRef
    ) -> None:
        await perform(callback_data.action, board, replies, me, callback_data.id, "")
        if isinstance(query.message, Message):
            await replies.edit(me.id, query.message.message_id)
        await answer(query)

    router.message.register(my_chats, Command("mychats"))
    router.message.register(on_command(ChatAction.END), Command("endchat"))
    router.message.register(on_command(ChatAction.BLOCK), Command("block"))
    router.message.register(on_command(ChatAction.REPORT), Command("report"))
    router.callback_query.register(chosen, ChatButton.filter(F.action != ChatAction.SEND))
    return router
