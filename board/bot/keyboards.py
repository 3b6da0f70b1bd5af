"""The board bot's buttons: the Mini App (inline and on the keyboard), an invitation's answers, chat choosers."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    WebAppInfo,
)

from board.bot.callbacks import ChatAction, ChatButton, InviteAction, InviteButton
from board.texts import t

BUTTON_TEXT_MAX = 60


def open_board_inline(lang: str, url: str) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(text=t(lang, "bot.open_board"), web_app=WebAppInfo(url=url))
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def open_board_keyboard(lang: str, url: str) -> ReplyKeyboardMarkup:
    """The keyboard button: only a Mini App opened from it may `sendData` back to the bot."""
    button = KeyboardButton(text=t(lang, "bot.keyboard_button"), web_app=WebAppInfo(url=url))
    return ReplyKeyboardMarkup(keyboard=[[button]], resize_keyboard=True, is_persistent=True)


def invite_keyboard(lang: str, invite_id: str) -> InlineKeyboardMarkup:
    def button(action: InviteAction, key: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(text=t(lang, key), callback_data=InviteButton(action=action, id=invite_id).pack())

    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(InviteAction.ACCEPT, "invite.accept"), button(InviteAction.DECLINE, "invite.decline")],
            [button(InviteAction.REPORT, "invite.report")],
        ]
    )


def chat_chooser(
    lang: str, chats: Sequence[tuple[str, str, str]], action: ChatAction, token: str = ""
) -> InlineKeyboardMarkup:
    """One button per chat `(chat id, alias, ad title)`: "Собеседник #K7 · <ad title>"."""
    rows = []
    for chat_id, alias, title in chats:
        label = t(lang, "chat.partner", alias=alias, title=title)
        if len(label) > BUTTON_TEXT_MAX:
            label = label[: BUTTON_TEXT_MAX - 1] + "…"
        data = ChatButton(action=action, id=chat_id, token=token).pack()
        rows.append([InlineKeyboardButton(text=label, callback_data=data)])
    return InlineKeyboardMarkup(inline_keyboard=rows)
