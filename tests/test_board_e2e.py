"""End to end: the real `run_board.py` process against the Bot API stand-in on 127.0.0.1, with real Redis and
SQLite. People meet through an ad, chat (text, an album, a reply, an edit), survive a restart of the board
process mid-chat, and part (block, decline, a partner who blocked the bot). No Telegram id reaches the log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select

from board.texts import t
from database.board_models import BoardInvite
from tests.support.board_harness import PHOTO, Person
from tests.support.board_process import WAIT, WEBAPP, Board
from tests.support.stack import ROOT, Stack, wait_until

pytestmark = pytest.mark.processes
AUTHOR, GUEST, THIRD = 7_314_159_001, 7_314_159_002, 7_314_159_003
USER_IDS = (AUTHOR, GUEST, THIRD)
SECRET_WORDS = "пароль-от-сейфа-42"  # message contents must never reach the log either


def wait_call(board: Board, method: str, chat_id: int, after: int, refused: bool = False, **expect: Any) -> Any:
    """The bot's call (Telegram took it; with `refused`, or refused it) matching `expect`."""

    def matches(call: Any) -> bool:
        if call.method != method or str(call.params.get("chat_id")) != str(chat_id):
            return False
        if refused and call.ok:
            return False
        return all(str(value) in str(call.params.get(key, "")) for key, value in expect.items())

    return board.core.wait_for(matches, WAIT, after=after, refused=refused)


def new_ad(board: Board, author: int, title: str) -> str:
    user = board.service.user(author, "ru")
    return board.service.create_ad(user, title, f"Отдам недорого: {title}, самовывоз", "sale").id


def card_of(board: Board, person: Person, after: int) -> dict[str, Any]:
    """The invitation card the person got (after `after`), as the stand-in keeps it."""
    wait_call(board, "sendMessage", person.id, after, reply_markup="bi:a:")
    return person.last_with_buttons()


def accept(board: Board, author: Person, guest: Person, after: int) -> None:
    card = card_of(board, author, after)
    mark = len(board.core.calls)
    author.click("Принять", card)
    wait_call(board, "sendMessage", author.id, mark, text="Чат открыт")
    wait_call(board, "sendMessage", guest.id, mark, text="Чат открыт")


def assert_private_logs(board: Board) -> None:
    logs = board.logs()
    assert "board bot @" in logs
    for user_id in USER_IDS:
        assert str(user_id) not in logs, f"a Telegram id is in the board's log:\n{logs}"
    assert SECRET_WORDS not in logs
    assert "Traceback" not in logs, logs


def assert_nothing_personal_in_redis(board: Board, *texts: str) -> None:
    """No board user's Telegram id, and no message text, in any Redis key or value (the FSM included)."""
    from redis import Redis

    redis = Redis.from_url(board.stack.env["REDIS_URL"])
    dumped = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        dumped.append(key)
        if kind == b"string":
            dumped.append(redis.get(key) or b"")
        elif kind == b"hash":
            dumped.extend(b"".join(pair) for pair in redis.hgetall(key).items())
    everything = b"\n".join(dumped).decode(errors="replace")
    assert any(":board:fsm:" in line for line in everything.splitlines())  # the pending message is there
    for secret in (str(AUTHOR), str(GUEST), str(THIRD), *texts):
        assert secret not in everything


def test_people_meet_chat_survive_a_restart_and_block(board: Board) -> None:
    process = board.start()
    menu = next(c for c in board.core.calls if c.method == "setChatMenuButton")
    assert json.loads(menu.params["menu_button"])["web_app"]["url"] == WEBAPP.rstrip("/")
    author, guest, third = board.person(AUTHOR), board.person(GUEST), board.person(THIRD)

    mark = len(board.core.calls)
    guest.say("/start")
    welcome = wait_call(board, "sendMessage", GUEST, mark, text="Анонимная доска")
    assert welcome.params["reply_markup"]["inline_keyboard"][0][0]["web_app"]["url"] == WEBAPP.rstrip("/")

    # A first message through the Mini App's API reaches the author; accepting opens the chat.
    bike = new_ad(board, AUTHOR, "Велосипед")
    mark = len(board.core.calls)
    status, body = board.api_invite(GUEST, bike, "Здравствуйте! Велосипед ещё продаётся?")
    assert status == 201, body
    accept(board, author, guest, mark)
    [chat] = board.service.active_chats(author.ref)

    # Text goes as a copy.
    mark = len(board.core.calls)
    hello = guest.say(f"Когда удобно посмотреть? {SECRET_WORDS}")
    copy = wait_call(board, "copyMessage", AUTHOR, mark, message_id=hello["message_id"])
    assert copy.params["from_chat_id"] == str(GUEST)

    # An album stays an album: one copyMessages call.
    mark = len(board.core.calls)
    album = [author.send(media_group_id="e2e-album", photo=PHOTO, caption="вот он") for _ in range(2)]
    copied = wait_call(board, "copyMessages", GUEST, mark)
    assert json.loads(copied.params["message_ids"]) == [m["message_id"] for m in album]
    second_photo = wait_until(lambda: board.service.counterpart(author.ref, chat.chat_id, album[1]["message_id"]), WAIT)

    # A reply to the album's second photo lands on the author's original.
    mark = len(board.core.calls)
    guest.say("А этот ракурс почему такой?", reply_to=second_photo)
    reply = wait_call(board, "copyMessage", AUTHOR, mark)
    assert json.loads(reply.params["reply_parameters"])["message_id"] == album[1]["message_id"]

    # An edit reaches the copy.
    mark = len(board.core.calls)
    guest.edit(hello, text="Когда удобно посмотреть? Можно завтра")
    edit = wait_call(board, "editMessageText", AUTHOR, mark, text="Можно завтра")
    assert int(edit.params["message_id"]) == board.service.counterpart(guest.ref, chat.chat_id, hello["message_id"])

    # A second chat makes the author choose; the waiting message survives a restart of the board process.
    sofa = new_ad(board, AUTHOR, "Диван")
    mark = len(board.core.calls)
    third.send_data(json.dumps({"ad_id": sofa, "message": "Диван ещё свободен?"}))
    wait_call(board, "sendMessage", THIRD, mark, text="отправлено")
    accept(board, author, third, mark)
    mark = len(board.core.calls)
    waiting = author.say("Всем спасибо за интерес!")
    wait_call(board, "sendMessage", AUTHOR, mark, text=t("ru", "chat.choose_send"))
    chooser = author.last_with_buttons()
    board.settled()
    assert_nothing_personal_in_redis(board, "Всем спасибо за интерес")
    process.send_signal(signal.SIGKILL)
    process.wait(30)

    board.start()
    mark = len(board.core.calls)
    author.click("Диван", chooser)
    wait_call(board, "copyMessage", THIRD, mark, message_id=waiting["message_id"])
    mark = len(board.core.calls)
    later = guest.say("Я тут, после перезапуска")
    wait_call(board, "copyMessage", AUTHOR, mark, message_id=later["message_id"])

    # Block: the chat ends for both; the blocked guest's first message to another of the author's ads is answered
    # as any is, and never arrives.
    reply_to = wait_until(lambda: board.service.counterpart(guest.ref, chat.chat_id, later["message_id"]), WAIT)
    mark = len(board.core.calls)
    author.say("/block", reply_to=reply_to)
    wait_call(board, "sendMessage", AUTHOR, mark, text="заблокирован")
    wait_call(board, "sendMessage", GUEST, mark, text="завершил")
    assert [side.ad_title for side in board.service.active_chats(author.ref)] == ["Диван"]
    mark = len(board.core.calls)
    status, body = board.api_invite(GUEST, new_ad(board, AUTHOR, "Самокат"), "А самокат отдадите?")
    assert status == 201 and set(body) == {"invite_id"}
    with board.service.sessions() as session:  # kept, and queued for nobody
        assert session.scalar(select(BoardInvite.status).where(BoardInvite.public_id == body["invite_id"])) == (
            "swallowed"
        )
    assert not [item for item in board.service.pending_outbox() if item.payload.get("invite") == body["invite_id"]]
    assert author.calls(mark) == []

    assert board.stack.stop(board.processes[-1]) == 0  # SIGTERM stops it cleanly
    assert_private_logs(board)


def test_decline_and_a_partner_who_blocked_the_bot(board: Board) -> None:
    board.start()
    author, guest, third = board.person(AUTHOR), board.person(GUEST, "en"), board.person(THIRD)

    # Decline: the sender hears nothing more.
    mark = len(board.core.calls)
    guest.send_data(json.dumps({"ad_id": new_ad(board, AUTHOR, "Шкаф"), "message": "Is the wardrobe free?"}))
    wait_call(board, "sendMessage", GUEST, mark, text="went to the author")
    card = card_of(board, author, mark)
    after_invite = len(board.core.calls)
    author.click("Отклонить", card)
    wait_call(board, "sendMessage", AUTHOR, after_invite, text=t("ru", "invite.declined"))
    assert guest.calls(after_invite) == []

    # The partner blocked the bot: the next message ends the chat and the sender is told.
    mark = len(board.core.calls)
    third.send_data(json.dumps({"ad_id": new_ad(board, AUTHOR, "Стол"), "message": f"Стол ещё есть? {SECRET_WORDS}"}))
    accept(board, author, third, mark)
    board.core.fail(THIRD, 403, "Forbidden: bot was blocked by the user")
    mark = len(board.core.calls)
    author.say("Есть, приезжайте")
    wait_call(board, "copyMessage", THIRD, mark, refused=True)
    wait_call(board, "sendMessage", AUTHOR, mark, text="недоступен")
    assert board.service.active_chats(author.ref) == []
    assert guest.calls(after_invite) == []

    assert_private_logs(board)


def test_configuration_errors_stop_it_with_one_line(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_board.py")],
        cwd=stack.workdir,
        env={**stack.env, "BOARD_BOT_TOKEN": "not-a-token"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    assert result.stderr.strip().splitlines() == [
        "config error: BOARD_BOT_TOKEN must look like 123456:ABC-DEF... (the token from @BotFather)"
    ]

    version = subprocess.run(
        [sys.executable, str(ROOT / "run_board.py"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.strip()
