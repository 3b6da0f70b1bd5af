"""The fake Telegram's updates: event handlers and incoming messages (see `fake_telegram`).

Handlers are registered as with Telethon (`add_event_handler(callback, events.NewMessage(...))`, `@client.on`,
`remove_event_handler`, `list_event_handlers`, same signatures). While a client that has handlers is connected
it polls the Redis list `fake:inbox:<phone>` (FAKE_TELEGRAM_REDIS) every POLL_SECONDS and dispatches each item
as a `NewMessage` event, one task per message as Telethon does; it stops polling when it disconnects or its
last handler goes. Tests put messages there with `deliver(redis, phone, chat_id=..., text=...)`; an item is

    {"chat_id": marked id (user > 0, basic group < 0, channel or supergroup -100…), "text", "id",
     "is_private"?, "sender_id"?, "sender_bot"?, "chat_username"?, "chat_title"?, "megagroup"?, "out"?}

What the account sends to a chat (`event.respond`, `event.reply`, `send_message`) is appended to the Redis
list `fake:sent:<phone>` as {"chat_id", "text"}: `sent(redis, phone)` reads it.

NewMessage's `incoming`, `outgoing`, `chats` (ids or usernames), `blacklist_chats`, `from_users` (ids),
`pattern` and `func` filters are honoured; other event types are registered but never fire.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telethon import events, utils
from telethon.tl import types

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
MESSAGE_IDS = "fake:message_ids"


def inbox(phone: str) -> str:
    return f"fake:inbox:{phone}"


def outbox(phone: str) -> str:
    return f"fake:sent:{phone}"


def deliver(redis: Any, phone: str, **message: Any) -> dict[str, Any]:
    """Queue an incoming message for the account `phone`; returns the item (with its id) as delivered.

    `chat_id` and `text` are needed; `id` defaults to a fresh number, `is_private` to a positive `chat_id`,
    `sender_id` to the chat in a private chat (1000 elsewhere).
    """
    if "chat_id" not in message or "text" not in message:
        raise TypeError("deliver() needs chat_id= and text=")
    chat_id = int(message["chat_id"])
    message.setdefault("id", int(redis.incr(MESSAGE_IDS)))
    message.setdefault("is_private", chat_id > 0)
    message.setdefault("sender_id", chat_id if message["is_private"] else 1000)
    redis.rpush(inbox(phone), json.dumps(message))
    return message


def sent(redis: Any, phone: str) -> list[dict[str, Any]]:
    """What the account sent so far, in order: [{"chat_id", "text"}]."""
    return [json.loads(item) for item in redis.lrange(outbox(phone), 0, -1)]


def _redis() -> Any:
    from tests.support import fake_telegram  # imported lazily: fake_telegram imports this module

    return fake_telegram._redis()


# --- what handlers receive --------------------------------------------------------------------------------


@dataclass
class FakePeerUser:
    id: int
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    bot: bool = False
    is_self: bool = False


@dataclass
class FakePeerChat:
    id: int  # the bare id, as Telethon's entities have it
    title: str | None = None
    username: str | None = None
    megagroup: bool = False
    broadcast: bool = False


@dataclass
class FakeMessage:
    id: int
    message: str
    out: bool
    chat_id: int
    sender_id: int | None
    fwd_from: Any = None

    @property
    def raw_text(self) -> str:
        return self.message

    @property
    def text(self) -> str:
        return self.message


@dataclass
class FakeNewMessage:
    """What a `NewMessage` handler gets: the attributes and coroutines plugins use of Telethon's event."""

    client: Any
    message: FakeMessage
    is_private: bool
    is_group: bool
    is_channel: bool
    chat: Any
    sender: Any
    pattern_match: Any = None
    _sent: list[Any] = field(default_factory=list, repr=False)

    @property
    def id(self) -> int:
        return self.message.id

    @property
    def raw_text(self) -> str:
        return self.message.message

    @property
    def text(self) -> str:
        return self.message.message

    @property
    def out(self) -> bool:
        return self.message.out

    @property
    def chat_id(self) -> int:
        return self.message.chat_id

    @property
    def sender_id(self) -> int | None:
        return self.message.sender_id

    async def get_chat(self) -> Any:
        return self.chat

    async def get_sender(self) -> Any:
        return self.sender

    async def get_input_chat(self) -> Any:
        return self.chat

    async def respond(self, message: str = "", **_options: Any) -> FakeMessage:
        return self.client._fake_record_sent(self.chat_id, message)

    async def reply(self, message: str = "", **_options: Any) -> FakeMessage:
        return self.client._fake_record_sent(self.chat_id, message)


def _event_from(client: Any, item: dict[str, Any]) -> FakeNewMessage:
    chat_id = int(item["chat_id"])
    bare, peer = utils.resolve_id(chat_id)
    private = bool(item.get("is_private", peer is types.PeerUser))
    channel = bool(item.get("is_channel", peer is types.PeerChannel))
    megagroup = bool(item.get("megagroup", False))
    group = bool(item.get("is_group", (peer is types.PeerChat) or (channel and megagroup)))
    sender_id = item.get("sender_id", chat_id if private else None)
    sender = (
        FakePeerUser(
            int(sender_id), item.get("sender_username"), item.get("sender_name"), None, bool(item.get("sender_bot"))
        )
        if sender_id is not None
        else None
    )
    if private:
        chat: Any = FakePeerUser(
            bare, item.get("chat_username"), item.get("chat_title"), None, bool(item.get("sender_bot"))
        )
    else:
        chat = FakePeerChat(
            bare, item.get("chat_title"), item.get("chat_username"), megagroup, channel and not megagroup
        )
    text = str(item.get("text", ""))
    message = FakeMessage(int(item["id"]), text, bool(item.get("out", False)), chat_id, sender_id)
    return FakeNewMessage(client, message, private, group, channel, chat, sender)


def _ids(value: Any) -> tuple[set[int], set[str]]:
    """Telethon's chat resolution, offline: ids (a bare positive id matches any peer type) and usernames."""
    if value is None:
        return set(), set()
    items = value if utils.is_list_like(value) else [value]
    ids: set[int] = set()
    names: set[str] = set()
    for item in items:
        if isinstance(item, int):
            if item < 0:
                ids.add(item)
            else:
                ids.update(
                    utils.get_peer_id(peer)
                    for peer in (types.PeerUser(item), types.PeerChat(item), types.PeerChannel(item))
                )
        else:
            names.add(str(item).lstrip("@").lower())
    return ids, names


async def _accepts(builder: Any, event: FakeNewMessage) -> bool:
    """NewMessage.filter, without resolving anything through the network."""
    if builder.incoming and event.out:
        return False
    if builder.outgoing and not event.out:
        return False
    if builder.forwards is not None and bool(builder.forwards):
        return False  # fake messages are never forwards
    if builder.from_users is not None:
        ids, names = _ids(builder.from_users)
        username = (getattr(event.sender, "username", None) or "").lower()
        if event.sender_id not in ids and not (username and username in names):
            return False
    if builder.chats is not None:
        ids, names = _ids(builder.chats)
        username = (getattr(event.chat, "username", None) or "").lower()
        inside = event.chat_id in ids or bool(username and username in names)
        if inside == builder.blacklist_chats:
            return False
    if builder.pattern:
        match = builder.pattern(event.raw_text or "")
        if not match:
            return False
        event.pattern_match = match
    if builder.func:
        verdict = builder.func(event)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)
    return True


# --- the client side --------------------------------------------------------------------------------------


class EventsMixin:
    """Mixed into `FakeClient`: Telethon's handler registry, and the inbox poll while connected.

    A subclass's own `connect` is wrapped (`__init_subclass__`) so that a client that already has handlers
    starts polling again when it reconnects, as Telethon keeps its handlers across reconnects.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        connect = cls.__dict__.get("connect")
        if connect is None or getattr(connect, "_fake_polls", False):
            return

        @functools.wraps(connect)
        async def connect_and_poll(self: EventsMixin, *args: Any, **kwargs: Any) -> None:
            await connect(self, *args, **kwargs)
            self._fake_ensure_polling()

        connect_and_poll._fake_polls = True  # type: ignore[attr-defined]
        cls.connect = connect_and_poll  # type: ignore[attr-defined]

    # --- Telethon's registry (same signatures as TelegramClient's)

    @property
    def _fake_builders(self) -> list[tuple[Any, Callable[[Any], Any]]]:
        registry = self.__dict__.get("_fake_registry")
        if registry is None:
            registry = self.__dict__["_fake_registry"] = []
        return registry

    def add_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> None:
        builders = events._get_handlers(callback)
        if builders is not None:
            for builder in builders:
                self._fake_builders.append((builder, callback))
        else:
            if isinstance(event, type):
                event = event()
            elif not event:
                event = events.Raw()
            self._fake_builders.append((event, callback))
        self._fake_ensure_polling()

    def on(self, event: Any) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        def decorator(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self.add_event_handler(f, event)
            return f

        return decorator

    def remove_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> int:
        if event and not isinstance(event, type):
            event = type(event)
        registry = self._fake_builders
        found = 0
        for index in range(len(registry) - 1, -1, -1):
            builder, registered = registry[index]
            if registered == callback and (not event or isinstance(builder, event)):
                del registry[index]
                found += 1
        return found

    def list_event_handlers(self) -> list[tuple[Callable[[Any], Any], Any]]:
        return [(callback, builder) for builder, callback in self._fake_builders]

    async def send_message(self, entity: Any, message: Any = "", **_options: Any) -> FakeMessage:
        chat = entity if isinstance(entity, int | str) else getattr(entity, "chat_id", getattr(entity, "id", entity))
        return self._fake_record_sent(chat, str(message))

    # --- the inbox

    def _fake_record_sent(self, chat_id: Any, text: str) -> FakeMessage:
        redis = _redis()
        phone = self.spec.phone  # type: ignore[attr-defined]
        if redis is not None:
            redis.rpush(outbox(phone), json.dumps({"chat_id": chat_id, "text": str(text)}))
        number = int(redis.incr(MESSAGE_IDS)) if redis is not None else 0
        return FakeMessage(number, str(text), True, chat_id if isinstance(chat_id, int) else 0, None)

    def _fake_ensure_polling(self) -> None:
        task = self.__dict__.get("_fake_poller")
        if task is not None and not task.done():
            return
        if not self._fake_builders or not self.is_connected() or _redis() is None:  # type: ignore[attr-defined]
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # registered outside the loop: polling starts with the next connect
            return
        self.__dict__["_fake_poller"] = loop.create_task(self._fake_poll(), name="fake-telegram-inbox")

    async def _fake_poll(self) -> None:
        redis = _redis()
        key = inbox(self.spec.phone)  # type: ignore[attr-defined]
        dispatching: set[asyncio.Task[None]] = set()
        while self.is_connected() and self._fake_builders:  # type: ignore[attr-defined]
            raw = redis.lpop(key)
            if raw is None:
                await asyncio.sleep(POLL_SECONDS)
                continue
            try:
                item = json.loads(raw)
                event = _event_from(self, item)
            except (ValueError, KeyError, TypeError) as error:
                log.warning("fake Telegram: a malformed inbox item was dropped (%s)", error)
                continue
            task = asyncio.get_running_loop().create_task(self._fake_dispatch(event))
            dispatching.add(task)
            task.add_done_callback(dispatching.discard)

    async def _fake_dispatch(self, event: FakeNewMessage) -> None:
        """Telethon's `_dispatch_update` for one NewMessage: each matching handler in order."""
        for builder, callback in list(self._fake_builders):
            if not isinstance(builder, events.NewMessage):
                continue
            if not await _accepts(builder, event):
                continue
            try:
                await callback(event)
            except events.StopPropagation:
                break
            except Exception:
                log.exception("Unhandled exception on %s", getattr(callback, "__name__", repr(callback)))
