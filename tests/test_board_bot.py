"""The board bot's handlers through `Dispatcher.feed_update` and its outbox, over a Bot API core that enforces
Telegram's flood limits, with real Redis and SQLite: invitations and the anonymous relay.
(`test_board_chats.py` covers the chat commands and refusals, `test_board_outbox.py` the outbox itself.)"""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from board.texts import t
from database.board_models import INVITE_MAX, BoardInvite, BoardMessage, BoardReport, InviteStatus, ReportTarget
from tests.support.board_harness import (
    AUTHOR,
    CONTENT,
    GUEST,
    PHOTO,
    THIRD,
    WEBAPP,
    BoardHarness,
    copies_to,
    invite,
    mark,
    new_ad,
    open_chat,
)
from tests.support.stack import wait_until

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
    guest.send_data(json.dumps({"ad_id": ad_id, "message": "x" * (INVITE_MAX + 1)}))
    assert guest.last_text() == t("en", "error.message_too_long", limit=INVITE_MAX)
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
        # Where the copy landed is recorded once Telegram's answer is in (as for the album above).
        wait_until(lambda: h.service.counterpart(author.ref, bike, waiting["message_id"]), 10, message="recorded")
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
    assert copies_to(h, AUTHOR, before) == []
    assert [(c.method, c.status) for c in h.core.refused_to(AUTHOR, before)] == [("copyMessage", 403)]
    assert h.service.active_chats(guest.ref) == []
    assert guest.texts(before)[-1].startswith("🔚 Собеседник #") and "недоступен" in guest.texts(before)[-1]
    before = mark(h)
    guest.say("Ау")
    assert guest.texts(before) == [t("ru", "chat.none")]


def test_a_flood_wait_is_sat_out_and_the_message_retried(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    chat_id = open_chat(h, author, guest)
    h.core.fail(AUTHOR, 429, "Too Many Requests: retry after 2", times=1, retry_after=2, methods=("copyMessage",))
    before = mark(h)
    sent = guest.say("Повторите, пожалуйста")
    [refused] = h.core.refused_to(AUTHOR, before)
    [copy] = copies_to(h, AUTHOR, before)
    assert refused.status == 429 and copy.params["message_id"] == refused.params["message_id"]
    assert copy.at - refused.at >= 1.9  # Telegram's retry_after, sat out
    assert h.service.counterpart(guest.ref, chat_id, sent["message_id"]) is not None
    assert guest.texts(before) == []  # nothing to tell: it arrived
