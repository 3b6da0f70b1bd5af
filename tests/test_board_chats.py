"""The board bot's chat commands (/mychats, /endchat, /block, /report) and its refusals, through
`Dispatcher.feed_update` and the outbox, over a Bot API core that enforces Telegram's flood limits."""

from __future__ import annotations

import json

from redis import Redis
from sqlalchemy import select

from board.bot.callbacks import ChatAction, ChatButton, InviteAction, InviteButton
from board.main import FSM_PREFIX
from board.texts import t
from database.board_models import BoardReport, ReportTarget
from tests.support.board_harness import (
    AUTHOR,
    GUEST,
    THIRD,
    BoardHarness,
    copies_to,
    invite,
    mark,
    new_ad,
    open_chat,
)

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
    # The blocked person's first message to another ad of the blocker's is answered as any first message is,
    # and never arrives.
    before = mark(h)
    invite(h, guest, new_ad(h, author, "Самокат"), "А самокат продаёте?")
    assert guest.texts(before) == [t("ru", "invite.sent", title="Самокат")]
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
    before = mark(h)
    report_id = h.service.report(author.ref, ReportTarget.CHAT, h.service.active_chats(author.ref)[0].chat_id, "")
    h.service.ban(report_id, "test")
    h.settle()  # the ban tells both, through the outbox (queued by the ban's own transaction)
    assert guest.texts(before) == [t("ru", "ban.notice")]
    assert author.texts(before)[-1].startswith("🔚 Чат завершён модератором: Собеседник #")
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
