"""The anonymous relay, modelled on secretlounge-ng: a message goes to the partner as a COPY (never a forward,
which would reveal the sender), albums stay albums (buffered briefly, sent with one `copyMessages`), every
(source, copy) id pair is recorded so replies land on the right message and edits reach the copy.

Where a message goes: with one active chat, there; with several, the chat of the message it replies to, else
the sender picks from buttons while the message waits in the FSM storage (Redis), surviving a restart.
A partner who blocked the bot (403) ends the chat; a flood wait (429) is sat out and retried, boundedly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ContentType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, ReplyParameters

from board.bot.callbacks import ChatAction, ChatButton
from board.bot.common import call, error_summary, notify, partner_label, with_retry
from board.bot.keyboards import chat_chooser
from board.errors import BoardError
from board.service import BoardService, ChatSide, UserRef
from board.texts import t
from celery_app.crypto import SecretError
from database.board_models import MESSAGE_MAX

log = logging.getLogger(__name__)

RELAYED = frozenset(
    {
        ContentType.TEXT,
        ContentType.PHOTO,
        ContentType.VIDEO,
        ContentType.VOICE,
        ContentType.VIDEO_NOTE,
        ContentType.AUDIO,
        ContentType.DOCUMENT,
        ContentType.STICKER,
        ContentType.ANIMATION,
        ContentType.LOCATION,
        ContentType.VENUE,
    }
)
# Things a person sends that the board does not carry; service messages are ignored silently.
REFUSED = frozenset(
    {
        ContentType.LIVE_PHOTO,
        ContentType.PAID_MEDIA,
        ContentType.STORY,
        ContentType.CHECKLIST,
        ContentType.DICE,
        ContentType.GAME,
        ContentType.POLL,
        ContentType.INVOICE,
        ContentType.USERS_SHARED,
        ContentType.USER_SHARED,
        ContentType.CHAT_SHARED,
        ContentType.UNKNOWN,
    }
)
CAPTIONED = frozenset({"photo", "video", "audio", "document", "animation", "voice", "media_group"})
ALBUM_DELAY = 0.8  # seconds to wait for the rest of an album
PENDING_KEY = "pending"
PENDING_MAX = 10  # messages waiting for a chat to be chosen, per person


def _kind(message: Message) -> str:
    content = message.content_type
    return str(getattr(content, "value", content))


@dataclass(frozen=True)
class Outgoing:
    """What to relay: one message or one album, as ids in the sender's chat (the bot copies from there)."""

    from_chat_id: int
    message_ids: tuple[int, ...]
    kind: str
    text: str
    reply_to: int | None  # the id, in the sender's chat, of the message this one replies to
    album: bool

    @classmethod
    def of(cls, messages: Sequence[Message]) -> Outgoing:
        ordered = sorted(messages, key=lambda m: m.message_id)
        first = ordered[0]
        kinds = {_kind(m) for m in ordered}
        text = next((m.text or m.caption or "" for m in ordered if m.text or m.caption), "")
        reply = next((m.reply_to_message.message_id for m in ordered if m.reply_to_message is not None), None)
        return cls(
            from_chat_id=first.chat.id,
            message_ids=tuple(m.message_id for m in ordered),
            kind=kinds.pop() if len(kinds) == 1 else "media_group",
            text=text[:MESSAGE_MAX],
            reply_to=reply,
            album=len(ordered) > 1,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "c": self.from_chat_id,
            "m": list(self.message_ids),
            "k": self.kind,
            "t": self.text,
            "r": self.reply_to,
            "a": self.album,
        }

    @classmethod
    def from_json(cls, data: object) -> Outgoing | None:
        if not isinstance(data, dict):
            return None
        try:
            ids = tuple(int(i) for i in data["m"])
            reply = None if data.get("r") is None else int(data["r"])
            return cls(int(data["c"]), ids, str(data["k"]), str(data["t"]), reply, bool(data["a"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class _Album:
    bot: Bot
    me: UserRef
    lang: str
    state: FSMContext
    messages: list[Message]
    deadline: float
    task: asyncio.Task[None] | None = None
    started: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Relay:
    """Relays messages between the two sides of a chat; one per bot process (it buffers albums in memory)."""

    def __init__(self, service: BoardService, album_delay: float = ALBUM_DELAY) -> None:
        self.service = service
        self.album_delay = album_delay
        self._albums: dict[tuple[int, str], _Album] = {}
        self._pending_lock = asyncio.Lock()

    def _unseal(self, sealed: object) -> object:
        if not isinstance(sealed, str):
            return None
        try:
            return json.loads(self.service.box.decrypt(sealed))
        except (SecretError, ValueError):
            return None

    # ---- incoming messages -----------------------------------------------------------------------------

    async def on_message(self, bot: Bot, message: Message, me: UserRef, lang: str, state: FSMContext) -> None:
        content = message.content_type
        if content == ContentType.CONTACT:
            await message.answer(t(lang, "relay.contact_refused"))
            return
        if content not in RELAYED:
            if content in REFUSED:
                await message.answer(t(lang, "relay.unsupported"))
            return
        if message.media_group_id is not None:
            await self._buffer(bot, message, me, lang, state)
            return
        await self.settle(message.chat.id)
        await self.route(bot, me, lang, state, Outgoing.of([message]))

    async def _buffer(self, bot: Bot, message: Message, me: UserRef, lang: str, state: FSMContext) -> None:
        assert message.media_group_id is not None
        key = (message.chat.id, message.media_group_id)
        loop = asyncio.get_running_loop()
        album = self._albums.get(key)
        if album is not None and not album.started:
            album.messages.append(message)
            album.deadline = loop.time() + self.album_delay
            return
        await self.settle(message.chat.id)  # earlier albums (and a late part of this one) go first
        album = _Album(bot, me, lang, state, [message], loop.time() + self.album_delay)
        self._albums[key] = album
        album.task = asyncio.create_task(self._flush_later(key, album))

    async def _flush_later(self, key: tuple[int, str], album: _Album) -> None:
        loop = asyncio.get_running_loop()
        while (wait := album.deadline - loop.time()) > 0:
            await asyncio.sleep(wait)
        await self._flush(key, album)

    async def _flush(self, key: tuple[int, str], album: _Album) -> None:
        album.started = True
        try:
            await self.route(album.bot, album.me, album.lang, album.state, Outgoing.of(album.messages))
        except BoardError as error:
            await notify(album.bot, key[0], t(album.lang, f"error.{error.code}", **error.values))
        except Exception as error:  # noqa: BLE001 - a background task: log it, keep the bot running
            log.error("relaying an album failed: %s", error_summary(error))
        finally:
            if self._albums.get(key) is album:
                del self._albums[key]
            album.done.set()

    async def settle(self, chat_id: int | None = None) -> None:
        """Send the buffered albums (of one sender, or all) now, so later messages keep their order."""
        for key, album in list(self._albums.items()):
            if chat_id is not None and key[0] != chat_id:
                continue
            if album.started:
                await album.done.wait()
                continue
            if album.task is not None:
                album.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await album.task
            await self._flush(key, album)

    # ---- where it goes ---------------------------------------------------------------------------------

    async def route(self, bot: Bot, me: UserRef, lang: str, state: FSMContext, outgoing: Outgoing) -> None:
        chats = await call(self.service.active_chats, me)
        if not chats:
            await notify(bot, outgoing.from_chat_id, t(lang, "chat.none"))
            return
        target: ChatSide | None = None
        if outgoing.reply_to is not None:
            replied_chat = await call(self.service.chat_of_reply, me, outgoing.reply_to)
            if replied_chat is not None:
                target = next((side for side in chats if side.chat_id == replied_chat), None)
                if target is None:
                    await notify(bot, outgoing.from_chat_id, t(lang, "error.chat_ended"))
                    return
        if target is None and len(chats) == 1:
            target = chats[0]
        if target is None:
            await self.ask(bot, lang, state, outgoing, chats)
            return
        await self.deliver(bot, me, lang, target, outgoing)

    async def ask(self, bot: Bot, lang: str, state: FSMContext, outgoing: Outgoing, chats: Sequence[ChatSide]) -> None:
        """Keep the message in Redis and show one button per chat."""
        token = secrets.token_urlsafe(6)
        async with self._pending_lock:
            pending = dict((await state.get_data()).get(PENDING_KEY) or {})
            # Sealed: the sender's chat id is their Telegram id, and the text is theirs (nothing in clear in Redis).
            pending[token] = self.service.box.encrypt(json.dumps(outgoing.to_json()))
            while len(pending) > PENDING_MAX:
                pending.pop(next(iter(pending)))
            await state.update_data({PENDING_KEY: pending})
        await with_retry(
            lambda: bot.send_message(
                outgoing.from_chat_id,
                t(lang, "chat.choose_send"),
                reply_markup=chat_chooser(lang, chats, ChatAction.SEND, token),
                reply_parameters=ReplyParameters(message_id=outgoing.message_ids[0], allow_sending_without_reply=True),
            )
        )

    async def choose(
        self, bot: Bot, query: CallbackQuery, button: ChatButton, me: UserRef, lang: str, state: FSMContext
    ) -> None:
        """A chat was picked for a waiting message: check the chat is still active, deliver, forget the message."""
        pending = (await state.get_data()).get(PENDING_KEY) or {}
        outgoing = Outgoing.from_json(self._unseal(pending.get(button.token)))
        if outgoing is None:
            await query.answer(t(lang, "chat.pending_gone"))
            return
        side = await call(self.service.chat_side, me, button.id)  # refused when it has ended
        delivered = await self.deliver(bot, me, lang, side, outgoing)
        if delivered:
            async with self._pending_lock:
                pending = dict((await state.get_data()).get(PENDING_KEY) or {})
                pending.pop(button.token, None)
                await state.update_data({PENDING_KEY: pending})
            if isinstance(query.message, Message):
                with contextlib.suppress(TelegramAPIError):
                    await query.message.edit_text(
                        t(lang, "chat.sent", partner=partner_label(lang, side.alias, side.ad_title)), reply_markup=None
                    )
        await query.answer()

    # ---- delivery --------------------------------------------------------------------------------------

    async def deliver(self, bot: Bot, me: UserRef, lang: str, side: ChatSide, outgoing: Outgoing) -> bool:
        """Copy the message(s) to the partner and record the id pairs; False (sender told) when it failed."""
        partner = side.partner.tg_id
        try:
            if outgoing.album:
                copies = await with_retry(
                    lambda: bot.copy_messages(
                        chat_id=partner, from_chat_id=outgoing.from_chat_id, message_ids=list(outgoing.message_ids)
                    )
                )
                delivered = [copy.message_id for copy in copies]
            else:
                reply = None
                if outgoing.reply_to is not None:
                    mapped = await call(self.service.counterpart, me, side.chat_id, outgoing.reply_to)
                    if mapped is not None:
                        reply = ReplyParameters(message_id=mapped, allow_sending_without_reply=True)
                copy = await with_retry(
                    lambda: bot.copy_message(
                        chat_id=partner,
                        from_chat_id=outgoing.from_chat_id,
                        message_id=outgoing.message_ids[0],
                        reply_parameters=reply,
                    )
                )
                delivered = [copy.message_id]
        except TelegramForbiddenError:
            await self.partner_unreachable(bot, side, outgoing.from_chat_id, lang)
            return False
        except TelegramAPIError as error:
            log.warning("a message was not relayed: %s", type(error).__name__)
            await notify(bot, outgoing.from_chat_id, t(lang, "relay.failed"))
            return False
        pairs = list(zip(outgoing.message_ids, delivered, strict=False))
        await call(self.service.record_relay, me, side.chat_id, pairs, outgoing.kind, outgoing.text)
        return True

    async def partner_unreachable(self, bot: Bot, side: ChatSide, sender_chat_id: int, lang: str) -> None:
        """The partner blocked the bot or is gone: the chat ends and the sender is told."""
        await call(self.service.end_unreachable, side.chat_id, side.partner_user_id)
        log.info("a chat ended: the partner is unreachable")
        await notify(
            bot, sender_chat_id, t(lang, "chat.partner_gone", partner=partner_label(lang, side.alias, side.ad_title))
        )

    async def on_edit(self, bot: Bot, message: Message, me: UserRef, lang: str) -> None:
        """An edited message: edit its copies (text or caption) and the stored text."""
        copies = await call(self.service.relayed_copies, me, message.message_id)
        if not copies:
            return
        for side, copy_id, kind in copies:
            partner = side.partner.tg_id
            try:
                if message.text is not None:
                    await with_retry(
                        lambda partner=partner, copy_id=copy_id: bot.edit_message_text(
                            text=message.text or "",
                            chat_id=partner,
                            message_id=copy_id,
                            entities=message.entities,
                            parse_mode=None,
                        )
                    )
                elif kind in CAPTIONED or _kind(message) in CAPTIONED:
                    await with_retry(
                        lambda partner=partner, copy_id=copy_id: bot.edit_message_caption(
                            chat_id=partner,
                            message_id=copy_id,
                            caption=message.caption or "",
                            caption_entities=message.caption_entities,
                            parse_mode=None,
                        )
                    )
                else:
                    continue
            except TelegramForbiddenError:
                await self.partner_unreachable(bot, side, message.chat.id, lang)
            except TelegramBadRequest as error:  # "message is not modified", or the copy is gone
                log.info("an edit was not relayed: %s", type(error).__name__)
            except TelegramAPIError as error:
                log.warning("an edit was not relayed: %s", type(error).__name__)
        await call(self.service.update_relayed_text, me, message.message_id, message.text or message.caption or "")


def build_router() -> Router:
    """Last router: the chooser's buttons, edits, and every message no command took goes to the relay."""
    router = Router(name=__name__)

    async def chosen(
        query: CallbackQuery,
        callback_data: ChatButton,
        bot: Bot,
        me: UserRef,
        lang: str,
        state: FSMContext,
        relay: Relay,
    ) -> None:
        await relay.choose(bot, query, callback_data, me, lang, state)

    async def edited(message: Message, bot: Bot, me: UserRef, lang: str, relay: Relay) -> None:
        await relay.on_edit(bot, message, me, lang)

    async def relayed(message: Message, bot: Bot, me: UserRef, lang: str, state: FSMContext, relay: Relay) -> None:
        if message.text is not None and message.text.startswith("/"):
            await message.answer(t(lang, "bot.unknown_command"))
            return
        await relay.on_message(bot, message, me, lang, state)

    router.callback_query.register(chosen, ChatButton.filter(F.action == ChatAction.SEND))
    router.edited_message.register(edited)
    router.message.register(relayed)
    return router
