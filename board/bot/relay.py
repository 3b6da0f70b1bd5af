"""The anonymous relay, modelled on secretlounge-ng: a message goes to the partner as a COPY (never a forward,
which would reveal the sender), albums stay albums (collected briefly, copied with one `copyMessages`), every
(source, copy) id pair is recorded so replies land on the right message and edits reach the copy.

Where a message goes: with one active chat, there; with several, the chat of the message it replies to, else
the sender picks from buttons while the message waits in the FSM storage (Redis, sealed), surviving a
restart. Choosing the chat and queueing the copy happen in one transaction (`BoardService.enqueue_relay`):
the outbox (`board.bot.outbox`) then delivers it at Telegram's pace, in order, and tells the sender if
Telegram refuses it for good. An album being collected holds its updates unconfirmed (`polling.hold`), so a
restart cannot lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiogram import F, Router
from aiogram.enums import ContentType
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from board.bot.callbacks import ChatAction, ChatButton
from board.bot.common import answer, call, error_summary
from board.bot.polling import hold
from board.bot.replies import Replies, chooser
from board.errors import BoardError
from board.service import BoardService, ChatSide, RelayMessage, UserRef
from board.services.outbox import partner
from board.texts import t
from common.crypto import SecretError
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


def relay_message(messages: Sequence[Message]) -> RelayMessage:
    """One message or one album, as the ids in the sender's chat the bot copies from."""
    ordered = sorted(messages, key=lambda m: m.message_id)
    kinds = {_kind(m) for m in ordered}
    text = next((m.text or m.caption or "" for m in ordered if m.text or m.caption), "")
    reply = next((m.reply_to_message.message_id for m in ordered if m.reply_to_message is not None), None)
    return RelayMessage(
        message_ids=tuple(m.message_id for m in ordered),
        kind=kinds.pop() if len(kinds) == 1 else "media_group",
        text=text[:MESSAGE_MAX],
        reply_to=reply,
        album=len(ordered) > 1,
    )


def _choices(chats: Sequence[ChatSide]) -> list[tuple[str, str, str]]:
    return [(side.chat_id, side.alias, side.ad_title) for side in chats]


@dataclass
class _Album:
    me: UserRef
    lang: str
    state: FSMContext
    messages: list[Message]
    deadline: float
    task: asyncio.Task[None] | None = None
    started: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Relay:
    """Relays messages between the two sides of a chat; one per bot process (it collects albums in memory)."""

    def __init__(self, service: BoardService, replies: Replies, album_delay: float = ALBUM_DELAY) -> None:
        self.service = service
        self.replies = replies
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

    async def on_message(self, message: Message, me: UserRef, lang: str, state: FSMContext) -> None:
        content = message.content_type
        if content == ContentType.CONTACT:
            await self.replies.notice(me.id, "relay.contact_refused")
            return
        if content not in RELAYED:
            if content in REFUSED:
                await self.replies.notice(me.id, "relay.unsupported")
            return
        if message.media_group_id is not None:
            await self._collect(message, me, lang, state)
            return
        await self.settle(message.chat.id)
        await self.route(me, state, relay_message([message]))

    async def _collect(self, message: Message, me: UserRef, lang: str, state: FSMContext) -> None:
        assert message.media_group_id is not None
        key = (message.chat.id, message.media_group_id)
        loop = asyncio.get_running_loop()
        album = self._albums.get(key)
        if album is not None and not album.started:
            album.messages.append(message)
            album.deadline = loop.time() + self.album_delay
            hold(album.done)
            return
        await self.settle(message.chat.id)  # earlier albums (and a late part of this one) go first
        album = _Album(me, lang, state, [message], loop.time() + self.album_delay)
        self._albums[key] = album
        album.task = asyncio.create_task(self._flush_later(key, album))
        hold(album.done)

    async def _flush_later(self, key: tuple[int, str], album: _Album) -> None:
        loop = asyncio.get_running_loop()
        while (wait := album.deadline - loop.time()) > 0:
            await asyncio.sleep(wait)
        await self._flush(key, album)

    async def _flush(self, key: tuple[int, str], album: _Album) -> None:
        album.started = True
        try:
            await self.route(album.me, album.state, relay_message(album.messages))
        except BoardError as error:
            await self.replies.notice(album.me.id, f"error.{error.code}", dict(error.values))
        except Exception as error:  # noqa: BLE001 - a background task: log it, keep the bot running
            log.error("relaying an album failed: %s", error_summary(error))
        finally:
            if self._albums.get(key) is album:
                del self._albums[key]
            album.done.set()

    async def settle(self, chat_id: int | None = None) -> None:
        """Queue the albums being collected (of one sender, or all) now, so later messages keep their order."""
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

    async def route(self, me: UserRef, state: FSMContext, message: RelayMessage) -> None:
        route = await call(self.service.enqueue_relay, me, message)
        if route.outcome == "queued":
            self.replies.wake()
        elif route.outcome == "none":
            await self.replies.notice(me.id, "chat.none")
        elif route.outcome == "ended":
            await self.replies.notice(me.id, "error.chat_ended", reply_to=message.message_ids[0])
        else:
            await self.ask(me, state, message, route.chats)

    async def ask(self, me: UserRef, state: FSMContext, message: RelayMessage, chats: Sequence[ChatSide]) -> None:
        """Keep the message in Redis (sealed: it is what they wrote) and show one button per chat."""
        token = secrets.token_urlsafe(6)
        async with self._pending_lock:
            pending = dict((await state.get_data()).get(PENDING_KEY) or {})
            pending[token] = self.service.box.encrypt(json.dumps(message.to_json()))
            while len(pending) > PENDING_MAX:
                pending.pop(next(iter(pending)))
            await state.update_data({PENDING_KEY: pending})
        keyboard = chooser(ChatAction.SEND.value, _choices(chats), token)
        await self.replies.notice(me.id, "chat.choose_send", keyboard=keyboard, reply_to=message.message_ids[0])

    async def choose(self, query: CallbackQuery, button: ChatButton, me: UserRef, lang: str, state: FSMContext) -> None:
        """A chat was picked for a waiting message: queue it there (refused if the chat has ended)."""
        pending = (await state.get_data()).get(PENDING_KEY) or {}
        message = RelayMessage.from_json(self._unseal(pending.get(button.token)))
        if message is None:
            await answer(query, t(lang, "chat.pending_gone"))
            return
        route = await call(self.service.enqueue_relay, me, message, button.id)
        async with self._pending_lock:
            pending = dict((await state.get_data()).get(PENDING_KEY) or {})
            pending.pop(button.token, None)
            await state.update_data({PENDING_KEY: pending})
        if isinstance(query.message, Message) and route.side is not None:
            label = partner(route.side.alias, route.side.ad_title)
            await self.replies.edit(me.id, query.message.message_id, "chat.sent", {"partner": label})
        self.replies.wake()
        await answer(query)

    async def on_edit(self, message: Message, me: UserRef) -> None:
        """An edited message: its copies are edited too (text or caption), and the stored text."""
        caption = message.text is None and _kind(message) in CAPTIONED
        if message.text is None and not caption:
            return
        body = message.text if message.text is not None else (message.caption or "")
        entities = message.entities if message.text is not None else message.caption_entities
        dumped = [entity.model_dump(mode="json", exclude_none=True) for entity in entities or []]
        if await call(self.service.enqueue_edit, me, message.message_id, body, caption, dumped):
            self.replies.wake()


def build_router() -> Router:
    """Last router: the chooser's buttons, edits, and every message no command took goes to the relay."""
    router = Router(name=__name__)

    async def chosen(
        query: CallbackQuery, callback_data: ChatButton, me: UserRef, lang: str, state: FSMContext, relay: Relay
    ) -> None:
        await relay.choose(query, callback_data, me, lang, state)

    async def edited(message: Message, me: UserRef, relay: Relay) -> None:
        await relay.on_edit(message, me)

    async def relayed(message: Message, me: UserRef, lang: str, state: FSMContext, relay: Relay) -> None:
        if message.text is not None and message.text.startswith("/"):
            await relay.replies.notice(me.id, "bot.unknown_command")
            return
        await relay.on_message(message, me, lang, state)

    router.callback_query.register(chosen, ChatButton.filter(F.action == ChatAction.SEND))
    router.edited_message.register(edited)
    router.message.register(relayed)
    return router
