"""The board bot in process: its real dispatcher and outbox on a loop of their own, over a `BotApiCore` that
enforces Telegram's flood limits (no network), real Redis and SQLite or PostgreSQL.

`BoardHarness.feed` hands an update to the dispatcher and waits until the outbox has sent everything queued
(albums are queued a moment later, from the relay's buffer); `Person` talks to the bot like a Telegram user
(text, media, albums, replies, edits, button presses, Mini App `sendData`) and reads what the bot sent back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.enums import ParseMode
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import Update
from redis.asyncio import Redis as AsyncRedis

from board.bot.app import build_dispatcher
from board.bot.outbox import Outbox
from board.bot.relay import Relay
from board.bot.render import Renderer
from board.bot.replies import Replies
from board.main import FSM_PREFIX
from board.service import BoardService, UserRef
from board.texts import t
from common.crypto import SecretBox
from config import BoardLimits
from database.engine import open_database
from tests.support.bot_api import TOKEN, BotApiCore, Call, FloodLimits, RecordingSession
from tests.support.stack import TEST_SECRET_KEY

WEBAPP = "https://board.example/"
AUTHOR, GUEST, THIRD = 810001, 810002, 810003
_message_ids = itertools.count(1)
_update_ids = itertools.count(1)

PHOTO = [{"file_id": "photo-1", "file_unique_id": "p1", "width": 90, "height": 90}]
CONTENT: dict[str, dict[str, Any]] = {
    "text": {"text": "привет"},
    "photo": {"photo": PHOTO, "caption": "фото"},
    "video": {"video": {"file_id": "v", "file_unique_id": "v", "width": 1, "height": 1, "duration": 1}},
    "voice": {"voice": {"file_id": "vo", "file_unique_id": "vo", "duration": 2}},
    "video_note": {"video_note": {"file_id": "vn", "file_unique_id": "vn", "length": 240, "duration": 3}},
    "audio": {"audio": {"file_id": "au", "file_unique_id": "au", "duration": 4}},
    "document": {"document": {"file_id": "doc", "file_unique_id": "doc", "file_name": "a.pdf"}},
    "sticker": {
        "sticker": {
            "file_id": "st",
            "file_unique_id": "st",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
    },
    "animation": {
        "animation": {"file_id": "an", "file_unique_id": "an", "width": 1, "height": 1, "duration": 1},
        "document": {"file_id": "an", "file_unique_id": "an"},
    },
    "location": {"location": {"latitude": 43.25, "longitude": 76.95}},
}


class BoardHarness:
    """The board's real dispatcher on a loop of its own, over a `BotApiCore` (no network)."""

    def __init__(
        self,
        redis_url: str,
        database_url: str,
        core: BotApiCore | None = None,
        webapp_url: str = WEBAPP,
        album_delay: float = 1.0,  # generous: album parts are fed one by one, on a possibly busy machine
        limits: BoardLimits | None = None,
        flood: FloodLimits | None = None,
        send_rate: float = 30.0,
        chat_rate: float = 1.0,
    ) -> None:
        self.core = core or BotApiCore(flood or FloodLimits())
        self.engine, sessions = open_database(database_url)
        self.service = BoardService(sessions, SecretBox(TEST_SECRET_KEY), limits or BoardLimits())
        self.send_rate, self.chat_rate = send_rate, chat_rate
        self.redis_url = redis_url
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self._setup(webapp_url, album_delay))

    def _run(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _setup(self, webapp_url: str, album_delay: float) -> None:
        self.redis = AsyncRedis.from_url(self.redis_url)
        storage = RedisStorage(self.redis, key_builder=DefaultKeyBuilder(prefix=FSM_PREFIX))
        self.bot = Bot(
            TOKEN, session=RecordingSession(self.core), default=DefaultBotProperties(parse_mode=ParseMode.HTML)
        )
        self.outbox = Outbox(
            self.service, self.bot, Renderer(webapp_url), rate=self.send_rate, chat_rate=self.chat_rate
        )
        self.replies = Replies(self.service, self.outbox.wake)
        self.relay = Relay(self.service, self.replies, album_delay=album_delay)
        self.dispatcher = build_dispatcher(self.service, storage, webapp_url, self.relay, self.replies)
        self.outbox.start()

    def feed(self, update: dict[str, Any], settle: bool = True) -> None:
        """One update, handled to the end and (with `settle`) everything it queued sent (albums are queued a
        moment later, from the relay's buffer)."""
        full = {"update_id": next(_update_ids), **update}
        self._run(self.dispatcher.feed_update(self.bot, Update.model_validate(full, context={"bot": self.bot})))
        if settle:
            self.settle()

    def settle(self, timeout: float = 90) -> None:
        """Until the outbox has sent (or settled) everything queued, from any process."""
        self._run(self.outbox.idle(), timeout)

    def person(self, user_id: int, language: str = "ru") -> Person:
        return Person(self.core, self.feed, self.service, user_id, language)

    def close(self) -> None:
        async def shutdown() -> None:
            await self.relay.settle()
            await self.outbox.idle()
            await self.outbox.stop()
            await self.redis.aclose()

        self._run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.engine.dispose()


class Person:
    """A Telegram user in a private chat with the board bot: `deliver` hands an update to the bot (fed in
    process and handled to the end, or queued for the real process's getUpdates)."""

    def __init__(
        self,
        core: BotApiCore,
        deliver: Callable[[dict[str, Any]], Any],
        service: BoardService,
        user_id: int,
        language: str = "ru",
    ) -> None:
        self.core = core
        self.deliver = deliver
        self.service = service
        self.id = user_id
        self.language = language
        self.user = {
            "id": user_id,
            "is_bot": False,
            "first_name": f"User{user_id}",
            "username": f"user{user_id}",
            "language_code": language,
        }

    @property
    def ref(self) -> UserRef:
        return self.service.user(self.id)

    def message(self, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": next(_message_ids),
            "date": int(time.time()),
            "chat": {"id": self.id, "type": "private"},
            "from": self.user,
            **content,
        }
        text = content.get("text")
        if isinstance(text, str) and text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return message

    def send(self, reply_to: int | None = None, **content: Any) -> dict[str, Any]:
        if reply_to is not None:
            content["reply_to_message"] = {
                "message_id": reply_to,
                "date": int(time.time()),
                "chat": {"id": self.id, "type": "private"},
            }
        message = self.message(**content)
        self.deliver({"message": message})
        return message

    def say(self, text: str, reply_to: int | None = None) -> dict[str, Any]:
        return self.send(reply_to=reply_to, text=text)

    def edit(self, message: dict[str, Any], **changes: Any) -> None:
        edited = {**message, **changes, "edit_date": int(time.time())}
        self.deliver({"edited_message": edited})

    def send_data(self, data: str) -> None:
        self.send(web_app_data={"data": data, "button_text": "📋 Доска"})

    def press(self, data: str, message: dict[str, Any] | None = None) -> None:
        query: dict[str, Any] = {"id": str(next(_message_ids)), "from": self.user, "chat_instance": "1", "data": data}
        if message is not None:
            query["message"] = message
        self.deliver({"callback_query": query})

    def calls(self, after: int = 0) -> list[Call]:
        return self.core.calls_to(self.id, after)

    def texts(self, after: int = 0) -> list[str]:
        return [str(c.params.get("text", "")) for c in self.calls(after) if c.method == "sendMessage"]

    def last_text(self) -> str:
        texts = self.texts()
        assert texts, "the bot has sent nothing to this person"
        return texts[-1]

    def last_with_buttons(self) -> dict[str, Any]:
        """The newest message sent to this person that carries inline buttons (as the stand-in keeps it)."""
        for (chat, _), message in sorted(self.core.messages.items(), key=lambda item: -item[0][1]):
            if chat == self.id and (message.get("reply_markup") or {}).get("inline_keyboard"):
                return message
        raise AssertionError("no message with buttons")

    def buttons(self, message: dict[str, Any] | None = None) -> dict[str, str]:
        message = message or self.last_with_buttons()
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        return {b["text"]: b.get("callback_data", "") for row in rows for b in row}

    def click(self, label: str, message: dict[str, Any] | None = None) -> None:
        message = message or self.last_with_buttons()
        for text, data in self.buttons(message).items():
            if label in text:
                self.press(data, message)
                return
        raise AssertionError(f"no button {label!r}: {list(self.buttons(message))}")

    def answers(self, after: int = 0) -> list[str]:
        return [str(c.params.get("text", "")) for c in self.core.calls[after:] if c.method == "answerCallbackQuery"]


def mark(h: BoardHarness) -> int:
    return len(h.core.calls)


def copies_to(h: BoardHarness, chat_id: int, after: int = 0) -> list[Call]:
    """Copies Telegram took (refused attempts are not copies)."""
    return [c for c in h.core.calls_to(chat_id, after) if c.method in ("copyMessage", "copyMessages")]


def new_ad(h: BoardHarness, author: Person, title: str = "Велосипед", text: str = "") -> str:
    body = text or f"Продаю: {title}, в хорошем состоянии"
    return h.service.create_ad(h.service.user(author.id, author.language), title, body, "sale").id


def invite(h: BoardHarness, guest: Person, ad_id: str, text: str) -> None:
    guest.send_data(json.dumps({"ad_id": ad_id, "message": text}))


def open_chat(h: BoardHarness, author: Person, guest: Person, title: str = "Велосипед", text: str = "") -> str:
    """An ad by `author`, `guest`'s first message, accepted: the new chat's id."""
    ad_id = new_ad(h, author, title)
    invite(h, guest, ad_id, text or f"Здравствуйте! Интересует {title}, когда можно посмотреть?")
    author.click("Принять")
    chats = h.service.active_chats(author.ref)
    return next(side.chat_id for side in chats if side.ad_title == title)


@pytest.fixture
def h(redis_url: str, sqlite_url: str) -> Iterator[BoardHarness]:
    """A board bot on SQLite; afterwards, no handler may have failed unexpectedly."""
    harness = BoardHarness(redis_url, sqlite_url)
    yield harness
    harness.close()
    unexpected = {t("ru", "bot.unavailable"), t("en", "bot.unavailable")}
    assert not [c for c in harness.core.calls if c.params.get("text") in unexpected], "a handler failed unexpectedly"
