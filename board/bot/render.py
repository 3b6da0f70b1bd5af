"""Turns a claimed outbox row (`board.services.outbox.Prepared`) into the one Bot API request that sends it,
in the recipient's language: notices from the catalogue (values HTML-escaped, nested texts rendered too),
invitation cards, copies of relayed messages and albums (a reply mapped to the recipient's copy), edits of
those copies, and edits of the bot's own messages."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from aiogram.methods import (
    CopyMessage,
    CopyMessages,
    EditMessageCaption,
    EditMessageReplyMarkup,
    EditMessageText,
    SendMessage,
    TelegramMethod,
)
from aiogram.types import MessageEntity, ReplyParameters

from board.bot.callbacks import ChatAction
from board.bot.keyboards import chat_chooser, invite_keyboard, open_board_inline, open_board_keyboard
from board.services.outbox import OutboxKind, Prepared
from board.texts import t


class Unrenderable(ValueError):
    """A row this version cannot turn into a request (it is settled as refused, never retried)."""


def render_value(lang: str, value: object) -> object:
    """A notice's value as text: strings escaped, `{"$t": key, ...}` rendered, lists as bullet lines."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping) and isinstance(value.get("$t"), str):
        return render_text(lang, value["$t"], {k: v for k, v in value.items() if k != "$t"})
    if isinstance(value, list):
        return "\n".join(f"• {render_value(lang, item)}" for item in value)
    raise Unrenderable(f"a value of type {type(value).__name__}")


def render_text(lang: str, key: str, values: Mapping[str, object]) -> str:
    return t(lang, key, **{name: render_value(lang, value) for name, value in values.items()})


class Renderer:
    def __init__(self, webapp_url: str = "") -> None:
        self.webapp_url = webapp_url

    def render(self, prepared: Prepared) -> TelegramMethod[Any]:
        kind, payload = prepared.item.kind, prepared.item.payload
        try:
            if kind == OutboxKind.NOTICE:
                return self._notice(prepared, payload)
            if kind == OutboxKind.INVITE:
                return self._invite(prepared, payload)
            if kind == OutboxKind.RELAY:
                return self._relay(prepared, payload)
            if kind == OutboxKind.EDIT:
                return self._edit(prepared, payload)
            if kind == OutboxKind.OWN_EDIT:
                return self._own_edit(prepared, payload)
        except (KeyError, TypeError, ValueError) as error:
            raise Unrenderable(f"{kind}: {type(error).__name__}") from None
        raise Unrenderable(f"unknown kind {kind!r}")

    def _keyboard(self, lang: str, spec: Mapping[str, Any] | None) -> Any:
        if not spec:
            return None
        kind = spec.get("type")
        if kind == "open_board":
            if not self.webapp_url:
                return None
            if spec.get("style") == "keyboard":
                return open_board_keyboard(lang, self.webapp_url)
            return open_board_inline(lang, self.webapp_url)
        if kind == "chooser":
            chats = [(str(c[0]), str(c[1]), str(c[2])) for c in spec["chats"]]
            return chat_chooser(lang, chats, ChatAction(spec["action"]), str(spec.get("token", "")))
        raise Unrenderable(f"keyboard {kind!r}")

    def _notice(self, prepared: Prepared, payload: Mapping[str, Any]) -> SendMessage:
        lang = prepared.lang
        reply = payload.get("reply_to")
        return SendMessage(
            chat_id=prepared.chat_id,
            text=render_text(lang, str(payload["key"]), payload.get("values") or {}),
            reply_markup=self._keyboard(lang, payload.get("keyboard")),
            reply_parameters=None
            if reply is None
            else ReplyParameters(message_id=int(reply), allow_sending_without_reply=True),
        )

    def _invite(self, prepared: Prepared, payload: Mapping[str, Any]) -> SendMessage:
        lang = prepared.lang
        text = t(lang, "invite.new", title=escape(prepared.title), message=escape(prepared.message))
        return SendMessage(chat_id=prepared.chat_id, text=text, reply_markup=invite_keyboard(lang, payload["invite"]))

    def _relay(self, prepared: Prepared, payload: Mapping[str, Any]) -> TelegramMethod[Any]:
        message = payload["message"]
        ids = [int(i) for i in message["m"]]
        if prepared.from_chat_id is None or not ids:
            raise Unrenderable("relay without a source")
        if message.get("a"):
            return CopyMessages(chat_id=prepared.chat_id, from_chat_id=prepared.from_chat_id, message_ids=ids)
        reply = None
        if prepared.reply_to is not None:
            reply = ReplyParameters(message_id=prepared.reply_to, allow_sending_without_reply=True)
        return CopyMessage(
            chat_id=prepared.chat_id, from_chat_id=prepared.from_chat_id, message_id=ids[0], reply_parameters=reply
        )

    def _edit(self, prepared: Prepared, payload: Mapping[str, Any]) -> TelegramMethod[Any]:
        if prepared.copy_id is None:
            raise Unrenderable("edit without a copy")
        entities = [MessageEntity.model_validate(e) for e in payload.get("entities") or []] or None
        if "caption" in payload:
            return EditMessageCaption(
                chat_id=prepared.chat_id,
                message_id=prepared.copy_id,
                caption=str(payload["caption"]),
                caption_entities=entities,
                parse_mode=None,
            )
        return EditMessageText(
            chat_id=prepared.chat_id,
            message_id=prepared.copy_id,
            text=str(payload["text"]),
            entities=entities,
            parse_mode=None,
        )

    def _own_edit(self, prepared: Prepared, payload: Mapping[str, Any]) -> TelegramMethod[Any]:
        message_id = int(payload["message_id"])
        if "key" not in payload:
            return EditMessageReplyMarkup(chat_id=prepared.chat_id, message_id=message_id, reply_markup=None)
        text = render_text(prepared.lang, str(payload["key"]), payload.get("values") or {})
        return EditMessageText(chat_id=prepared.chat_id, message_id=message_id, text=text, reply_markup=None)
