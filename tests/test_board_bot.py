"""The board bot's handlers through `Dispatcher.feed_update`: a recording Bot API session, real Redis and SQLite.

`BoardHarness` runs the real dispatcher on its own event loop; `Person` talks to it like a Telegram user
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
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import select

from board.bot.app import build_dispatcher
from board.bot.callbacks import ChatAction, ChatButton, InviteAction, InviteButton
from board.bot.relay import Relay
from board.main import FSM_PREFIX
from board.service import BoardService, UserRef
from board.texts import t
from celery_app.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardInvite, BoardMessage, BoardReport, InviteStatus, ReportTarget
from database.engine import open_database
from tests.support.bot_api import TOKEN, BotApiCore, Call, RecordingSession
from tests.support.stack import TEST_SECRET_KEY, wait_until

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
    ) -> None:
        self.core = core or BotApiCore()
        self.engine, sessions = open_database(database_url)
        self.service = BoardService(sessions, SecretBox(TEST_SECRET_KEY), limits or BoardLimits())
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
        self.relay = Relay(self.service, album_delay=album_delay)
        self.dispatcher = build_dispatcher(self.service, storage, webapp_url, self.relay)

    def feed(self, update: dict[str, Any]) -> None:
        """One update, handled to the end (albums are sent a moment later, from the relay's buffer)."""
        full = {"update_id": next(_update_ids), **update}
        self._run(self.dispatcher.feed_update(self.bot, Update.model_validate(full, context={"bot": self.bot})))

    def person(self, user_id: int, language: str = "ru") -> Person:
        return Person(self.core, self.feed, self.service, user_id, language)

    def close(self) -> None:
        async def shutdown() -> None:
            await self.relay.settle()
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
    harness = BoardHarness(redis_url, sqlite_url)
    yield harness
    harness.close()
    unexpected = {t("ru", "bot.unavailable"), t("en", "bot.unavailable")}
    assert not [c for c in harness.core.calls if c.params.get("text") in unexpected], "a handler failed unexpectedly"


# ---- /start and the Mini App ---------------------------------------------------------------------------------


def test_start_offers_the_mini_app_inline_and_on_the_keyboard(h: BoardHarness) -> None:
    ru, en = h.person(AUTHOR, "ru"), h.person(GUEST, "en")
    ru.say("/start")
    sent = [c for c in ru.calls() if c.method == "sendMessage"]
    assert "Анонимная доска" in sent[0].params["text"]
    inline = sent[0].params["reply_markup"]["inline_keyboard"][0][0]
    assert inline["web_app"]["url"] == WEBAPP and inline["text"] == "📋 Открыть доску"
    keyboard = sent[1].params["reply_markup"]["keyboard"][0][0]
    assert keyboard["web_app"]["url"] == WEBAPP and keyboard["text"] == "📋 Доска"
    en.say("/start")
    assert "Anonymous bulletin board" in en.texts()[0]
    assert en.calls()[0].params["reply_markup"]["inline_keyboard"][0][0]["text"] == "📋 Open the board"


def test_start_without_a_webapp_url_says_the_board_address_is_not_configured(redis_url: str, sqlite_url: str) -> None:
    harness = BoardHarness(redis_url, sqlite_url, webapp_url="")
    try:
        person = harness.person(AUTHOR, "en")
        person.say("/start")
        assert person.texts()[-1] == t("en", "bot.no_webapp")
        assert all("reply_markup" not in c.params for c in person.calls())
    finally:
        harness.close()


# ---- invitations -----------------------------------------------------------------------------------------------


def test_send_data_delivers_an_invitation_and_accepting_opens_an_anonymous_chat(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR, "en"), h.person(GUEST, "ru")
    ad_id = new_ad(h, author, "Велосипед <Stels>")
    # An author_tg_id in the data is ignored: the invitation goes to the ad's real author.
    guest.send_data(json.dumps({"ad_id": ad_id, "message": "Добрый день, ещё продаёте?", "author_tg_id": THIRD}))
    assert h.core.calls_to(THIRD) == []
    card = author.last_with_buttons()
    assert "Велосипед &lt;Stels&gt;" in card["text"] and "Добрый день, ещё продаёте?" in card["text"]
    assert list(author.buttons(card)) == ["✅ Accept", "❌ Decline", "🚩 Report"]
    assert "Велосипед &lt;Stels&gt;" in guest.last_text() and "отправлено" in guest.last_text()

    accept = author.buttons(card)["✅ Accept"]
    before = mark(h)
    author.click("Accept", card)
    chat = h.service.active_chats(author.ref)[0]
    guest_side = h.service.active_chats(guest.ref)[0]
    assert author.texts(before)[-1].startswith("✅ Chat opened: <b>Partner #")
    assert f"Partner {chat.alias} · Велосипед &lt;Stels&gt;" in author.texts(before)[-1]
    assert f"Собеседник {guest_side.alias} · Велосипед &lt;Stels&gt;" in guest.texts(before)[-1]
    assert author.buttons(h.core.messages[(AUTHOR, card["message_id"])]) == {}  # the buttons are gone
    # Nobody sees the other's Telegram id or name.
    for call in h.core.calls[before:]:
        text = str(call.params.get("text", ""))
        assert str(GUEST) not in text and str(AUTHOR) not in text and "User81" not in text

    before = mark(h)
    author.press(accept)  # the same button again
    assert author.answers(before) == [t("en", "error.invite_decided")]
    assert len(h.service.active_chats(author.ref)) == 1


def test_bad_send_data_gets_a_short_answer_and_changes_nothing(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST, "en")
    ad_id = new_ad(h, author)
    for data in ("not json", "[1, 2]", json.dumps({"ad_id": ad_id}), json.dumps({"message": "hi"}),
                 json.dumps({"ad_id": 5, "message": "hi"})):  # fmt: skip
        guest.send_data(data)
        assert guest.last_text() == t("en", "invite.bad_data")
    guest.send_data(json.dumps({"ad_id": ad_id, "message": "   "}))
    assert guest.last_text() == t("en", "error.message_empty")
    guest.send_data(json.dumps({"ad_id": ad_id, "message": "x" * 4097}))
    assert guest.last_text() == t("en", "error.message_too_long", limit=4096)
    guest.send_data(json.dumps({"ad_id": "nope", "message": "hello there"}))
    assert guest.last_text() == t("en", "error.ad_not_found")
    assert h.core.calls_to(AUTHOR) == []
    with h.service.sessions() as session:
        assert session.scalars(select(BoardInvite)).all() == []


def test_declining_tells_the_sender_nothing(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    invite(h, guest, new_ad(h, author), "Можно посмотреть завтра вечером?")
    before = mark(h)
    author.click("Отклонить")
    assert author.texts(before) == [t("ru", "invite.declined")]
    assert guest.calls(before) == []
    assert h.service.active_chats(author.ref) == []
    with h.service.sessions() as session:
        assert session.scalars(select(BoardInvite.status)).one() == InviteStatus.DECLINED.value


def test_reporting_an_invitation_files_a_report_and_declines_it(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    invite(h, guest, new_ad(h, author), "Купите у меня лучше мой велосипед")
    card = author.last_with_buttons()
    accept = author.buttons(card)["✅ Принять"]
    before = mark(h)
    author.click("Пожаловаться", card)
    assert author.texts(before) == [t("ru", "invite.reported")]
    assert guest.calls(before) == []
    with h.service.sessions() as session:
        report = session.scalars(select(BoardReport)).one()
        assert report.target == ReportTarget.INVITE.value
        assert session.scalars(select(BoardInvite.status)).one() == InviteStatus.DECLINED.value
    before = mark(h)
    author.press(accept)  # the old card's button: refused, nothing changes
    assert author.answers(before) == [t("ru", "error.invite_decided")]
    assert h.service.active_chats(author.ref) == []


# ---- the relay -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CONTENT))
def test_every_content_type_is_relayed_as_a_copy(h: BoardHarness, kind: str) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    chat_id = open_chat(h, author, guest)
    before = mark(h)
    sent = guest.send(**CONTENT[kind])
    [copy] = copies_to(h, AUTHOR, before)
    assert copy.method == "copyMessage"
    assert copy.params["from_chat_id"] == str(GUEST) and copy.params["message_id"] == str(sent["message_id"])
    assert not any(c.method.startswith("forward") for c in h.core.calls)
    copied_id = h.service.counterpart(guest.ref, chat_id, sent["message_id"])
    assert copied_id is not None and h.core.messages[(AUTHOR, copied_id)]["copy_of"]["chat_id"] == GUEST
    with h.service.sessions() as session:
        stored = session.scalars(select(BoardMessage).where(BoardMessage.src_message_id == sent["message_id"])).one()
        assert stored.kind == kind
        assert stored.text == (CONTENT[kind].get("text") or CONTENT[kind].get("caption") or "")


def test_contacts_and_polls_are_refused(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    open_chat(h, author, guest)
    before = mark(h)
    guest.send(contact={"phone_number": "+77001234567", "first_name": "Me"})
    assert guest.texts(before) == [t("ru", "relay.contact_refused")]
    guest.send(dice={"emoji": "🎲", "value": 3})
    assert guest.texts(before)[-1] == t("ru", "relay.unsupported")
    assert copies_to(h, AUTHOR, before) == []


def test_an_album_goes_as_one_copy_messages_call(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    chat_id = open_chat(h, author, guest)
    before = mark(h)
    parts = [
        guest.send(media_group_id="album-1", photo=PHOTO, **({"caption": "три фото"} if i == 0 else {}))
        for i in range(3)
    ]
    [copy] = wait_until(lambda: copies_to(h, AUTHOR, before), 20, message="the album is copied")
    time.sleep(0.5)
    assert copies_to(h, AUTHOR, before) == [copy] and copy.method == "copyMessages"
    assert json.loads(copy.params["message_ids"]) == [p["message_id"] for p in parts]
    for part in parts:  # every photo of the album has its counterpart, so replies to any of them land
        wait_until(lambda part=part: h.service.counterpart(guest.ref, chat_id, part["message_id"]), 10)
    with h.service.sessions() as session:
        texts = session.scalars(select(BoardMessage.text).order_by(BoardMessage.id)).all()
        assert texts == ["три фото", "", ""]


def test_a_text_right_after_an_album_keeps_its_place(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    open_chat(h, author, guest)
    before = mark(h)
    guest.send(media_group_id="album-2", photo=PHOTO)
    guest.send(media_group_id="album-2", photo=PHOTO)
    guest.say("и ещё вопрос")
    assert [c.method for c in copies_to(h, AUTHOR, before)] == ["copyMessages", "copyMessage"]


def test_replies_land_on_the_right_message_on_both_sides(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    chat_id = open_chat(h, author, guest)
    question = guest.say("Сколько стоит?")
    in_author_chat = h.service.counterpart(guest.ref, chat_id, question["message_id"])
    before = mark(h)
    answer = author.say("10 000", reply_to=in_author_chat)
    [copy] = copies_to(h, GUEST, before)
    assert json.loads(copy.params["reply_parameters"])["message_id"] == question["message_id"]
    in_guest_chat = h.service.counterpart(author.ref, chat_id, answer["message_id"])
    before = mark(h)
    guest.say("Беру", reply_to=question["message_id"])  # a reply to one's own message finds its copy too
    [copy] = copies_to(h, AUTHOR, before)
    assert json.loads(copy.params["reply_parameters"])["message_id"] == in_author_chat
    assert in_guest_chat is not None


def test_edits_are_relayed_as_edits(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    chat_id = open_chat(h, author, guest)
    text = guest.say("Встретимся в 5?")
    photo = guest.send(photo=PHOTO, caption="вот он")
    before = mark(h)
    guest.edit(text, text="Встретимся в 6?")
    guest.edit(photo, caption="вот он, с другой стороны")
    edits = [c for c in h.core.calls_to(AUTHOR, before) if c.method.startswith("edit")]
    assert [c.method for c in edits] == ["editMessageText", "editMessageCaption"]
    assert edits[0].params["text"] == "Встретимся в 6?"
    assert int(edits[0].params["message_id"]) == h.service.counterpart(guest.ref, chat_id, text["message_id"])
    assert "parse_mode" not in edits[0].params  # the original's entities, not HTML
    assert edits[1].params["caption"] == "вот он, с другой стороны"
    with h.service.sessions() as session:
        stored = session.scalars(select(BoardMessage.text).where(BoardMessage.src_message_id == text["message_id"]))
        assert stored.one() == "Встретимся в 6?"
    before = mark(h)
    guest.edit(guest.message(text="never relayed"), text="edited")  # not a relayed message: nothing happens
    assert h.core.calls[before:] == []


def test_with_several_chats_a_reply_decides_or_the_sender_chooses(redis_url: str, sqlite_url: str) -> None:
    h = BoardHarness(redis_url, sqlite_url)
    author, guest, third = h.person(AUTHOR), h.person(GUEST), h.person(THIRD)
    try:
        bike = open_chat(h, author, guest, "Велосипед")
        sofa = open_chat(h, author, third, "Диван")
        from_third = third.say("Диван ещё есть?")
        in_author_chat = h.service.counterpart(third.ref, sofa, from_third["message_id"])
        before = mark(h)
        author.say("Есть", reply_to=in_author_chat)
        assert len(copies_to(h, THIRD, before)) == 1
        assert copies_to(h, GUEST, before) == []

        before = mark(h)
        waiting = author.say("Всем привет")
        assert copies_to(h, GUEST, before) == copies_to(h, THIRD, before) == []
        chooser = author.last_with_buttons()
        assert author.texts(before) == [t("ru", "chat.choose_send")]
        labels = list(author.buttons(chooser))
        assert len(labels) == 2 and all(label.startswith("Собеседник #") for label in labels)
        assert {label.split(" · ")[1] for label in labels} == {"Велосипед", "Диван"}
    finally:
        h.close()

    # The pending message is in Redis: a restarted bot still delivers it.
    h = BoardHarness(redis_url, sqlite_url, core=h.core)
    try:
        author = h.person(AUTHOR)
        before = mark(h)
        author.click("Велосипед", chooser)
        [copy] = copies_to(h, GUEST, before)
        assert copy.params["message_id"] == str(waiting["message_id"])
        assert h.service.counterpart(author.ref, bike, waiting["message_id"]) is not None
        edited = h.core.messages[(AUTHOR, chooser["message_id"])]
        assert edited["text"].startswith("➡️ Отправлено: Собеседник #") and "reply_markup" not in edited
        before = mark(h)
        author.click("Диван", chooser)  # the same message again: already sent
        assert author.answers(before) == [t("ru", "chat.pending_gone")]
        assert copies_to(h, THIRD, before) == []
    finally:
        h.close()


def test_a_chooser_button_of_an_ended_chat_changes_nothing(h: BoardHarness) -> None:
    author, guest, third = h.person(AUTHOR), h.person(GUEST), h.person(THIRD)
    bike = open_chat(h, author, guest, "Велосипед")
    open_chat(h, author, third, "Диван")
    author.say("Кому-нибудь")
    chooser = author.last_with_buttons()
    h.service.end_chat(guest.ref, bike)
    before = mark(h)
    author.click("Велосипед", chooser)
    assert author.answers(before) == [t("ru", "error.chat_ended")]
    assert copies_to(h, GUEST, before) == []
    author.click("Диван", chooser)  # the message still waits for another chat
    assert len(copies_to(h, THIRD, before)) == 1


def test_a_partner_who_blocked_the_bot_ends_the_chat_and_the_sender_is_told(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    open_chat(h, author, guest)
    h.core.fail(AUTHOR, 403, "Forbidden: bot was blocked by the user")
    before = mark(h)
    guest.say("Вы тут?")
    assert [c.method for c in copies_to(h, AUTHOR, before)] == ["copyMessage"]
    assert h.service.active_chats(guest.ref) == []
    assert guest.texts(before)[-1].startswith("🔚 Собеседник #") and "недоступен" in guest.texts(before)[-1]
    before = mark(h)
    guest.say("Ау")
    assert guest.texts(before) == [t("ru", "chat.none")]


def test_a_flood_wait_is_sat_out_and_the_message_retried(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    chat_id = open_chat(h, author, guest)
    h.core.fail(AUTHOR, 429, "Too Many Requests: retry after 1", times=1, retry_after=1, methods=("copyMessage",))
    before = mark(h)
    sent = guest.say("Повторите, пожалуйста")
    first, second = copies_to(h, AUTHOR, before)
    assert second.at - first.at >= 0.9
    assert h.service.counterpart(guest.ref, chat_id, sent["message_id"]) is not None
    assert guest.texts(before) == []


# ---- chat commands ---------------------------------------------------------------------------------------------


def test_mychats_and_endchat_tell_both_sides(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST, "en")
    guest.say("/mychats")
    assert guest.last_text() == t("en", "chat.none")
    open_chat(h, author, guest)
    author.say("/mychats")
    assert "Собеседник #" in author.last_text() and "Велосипед" in author.last_text()
    before = mark(h)
    guest.say("/endchat")
    assert guest.texts(before)[-1].startswith("Chat ended: Partner #")
    assert author.texts(before)[-1].startswith("🔚 Собеседник #") and "завершил" in author.texts(before)[-1]
    assert h.service.active_chats(author.ref) == []
    before = mark(h)
    author.say("ещё тут?")
    assert author.texts(before) == [t("ru", "chat.none")] and copies_to(h, GUEST, before) == []


def test_endchat_with_several_chats_asks_which(h: BoardHarness) -> None:
    author, guest, third = h.person(AUTHOR), h.person(GUEST), h.person(THIRD)
    open_chat(h, author, guest, "Велосипед")
    sofa = open_chat(h, author, third, "Диван")
    from_sofa = h.service.counterpart(third.ref, sofa, third.say("Диван ещё есть?")["message_id"])
    before = mark(h)
    author.say("/endchat")
    assert author.texts(before) == [t("ru", "chat.choose_end")]
    chooser = author.last_with_buttons()
    author.click("Диван", chooser)
    assert [side.ad_title for side in h.service.active_chats(author.ref)] == ["Велосипед"]
    assert "завершил" in third.texts(before)[-1]
    assert guest.calls(before) == []
    before = mark(h)
    author.press(ChatButton(action=ChatAction.END, id=sofa).pack())  # again: the chat has ended
    assert author.answers(before) == [t("ru", "error.chat_ended")]
    author.say("/endchat", reply_to=from_sofa)  # a reply to the ended chat never ends the other one
    assert author.texts(before)[-1] == t("ru", "error.chat_ended")
    assert len(h.service.active_chats(author.ref)) == 1


def test_block_ends_the_chat_and_the_blocked_person_cannot_invite_again(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    open_chat(h, author, guest)
    before = mark(h)
    author.say("/block")
    assert author.texts(before)[-1].startswith("⛔ Собеседник #")
    assert "завершил" in guest.texts(before)[-1]
    assert h.service.active_chats(guest.ref) == []
    before = mark(h)
    invite(h, guest, new_ad(h, author, "Самокат"), "А самокат продаёте?")
    assert guest.texts(before) == [t("ru", "error.blocked")]
    assert author.calls(before) == []


def test_report_files_a_report_on_the_chat(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    chat_id = open_chat(h, author, guest)
    author.say("/report грубит")
    assert author.last_text().startswith("🚩")
    with h.service.sessions() as session:
        report = session.scalars(select(BoardReport).where(BoardReport.target == ReportTarget.CHAT.value)).one()
        assert report.reason == "грубит"
    assert h.service.active_chats(author.ref)[0].chat_id == chat_id  # reporting does not end the chat
    author.say("/report")
    assert author.last_text() == t("ru", "error.already_reported")


# ---- refusals ----------------------------------------------------------------------------------------------------


def test_a_banned_user_gets_a_short_answer_for_everything(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    open_chat(h, author, guest)
    report_id = h.service.report(author.ref, ReportTarget.CHAT, h.service.active_chats(author.ref)[0].chat_id, "")
    h.service.ban(report_id, "test")
    before = mark(h)
    guest.say("/start")
    guest.say("привет")
    guest.send_data(json.dumps({"ad_id": new_ad(h, author, "Стол"), "message": "Стол ещё продаётся?"}))
    assert guest.texts(before) == [t("ru", "bot.banned")] * 3
    guest.press("garbage")
    assert guest.answers(before) == [t("ru", "bot.banned")]
    assert author.calls(before) == []


def test_unknown_and_forged_buttons_get_a_short_answer(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR, "en"), h.person(GUEST)
    invite(h, guest, new_ad(h, author), "Ещё актуально?")
    before = mark(h)
    for data in ("garbage", "bi:zz:abc", "bc:s:nochat:tok"):
        author.press(data)
    author.press(InviteButton(action=InviteAction.ACCEPT, id="no-such-invite").pack())
    author.press(ChatButton(action=ChatAction.SEND, id="no-such-chat", token="nothing").pack())
    assert author.answers(before) == [
        t("en", "bot.unknown_button"),
        t("en", "bot.unknown_button"),
        t("en", "chat.pending_gone"),
        t("en", "error.invite_not_found"),
        t("en", "chat.pending_gone"),
    ]
    assert h.service.active_chats(author.ref) == []
    author.say("/nonsense")
    assert author.last_text() == t("en", "bot.unknown_command")


def test_group_chats_and_strangers_without_chats(h: BoardHarness, redis_url: str) -> None:
    stranger = h.person(THIRD)
    before = mark(h)
    h.feed({"message": {**stranger.message(text="hello"), "chat": {"id": -100, "type": "group", "title": "g"}}})
    assert h.core.calls[before:] == []
    stranger.say("hello")
    assert stranger.texts(before) == [t("ru", "chat.none")]
    keys = Redis.from_url(redis_url).keys(f"{FSM_PREFIX}:*")
    assert keys == []  # nothing waits: no chooser was needed
