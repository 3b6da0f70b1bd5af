"""The board's outbox against a Bot API that pushes back as Telegram does: flood limits (429 with `retry_after`),
refusals (403, 400), outages (5xx). Nothing is lost, each chat keeps its order, one chatty pair cannot starve
the others, a global flood wait holds everything, and only a permanent refusal ends a delivery — with the
sender told in their language. Rows a killed process left in flight are never sent twice; rows other
processes write are sent too."""

from __future__ import annotations

import json
import time

from aiogram.types import Update
from sqlalchemy import select, update

from board.bot.outbox import PER_CHAT_LOADED
from board.bot.pacing import CHAT_BURST, CHAT_RATE
from board.service import BoardService, RelayMessage
from board.texts import t
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardMessage, BoardOutbox, OutboxState, ReportTarget
from database.engine import open_database
from tests.support.board_harness import AUTHOR, GUEST, BoardHarness, Person, copies_to, mark, open_chat
from tests.support.bot_api import FloodLimits
from tests.support.stack import TEST_SECRET_KEY, wait_until

PAIRS = 12


def pairs(h: BoardHarness, count: int, base: int = 900_000) -> list[tuple[Person, Person]]:
    """`count` open chats, each between an author and a guest of their own."""
    people = []
    for index in range(count):
        author, guest = h.person(base + 2 * index), h.person(base + 2 * index + 1)
        open_chat(h, author, guest, f"Вещь номер {index}")
        people.append((author, guest))
    return people


def delivered_ids(h: BoardHarness, recipient: Person, sender: Person, after: int) -> list[int]:
    """The sender's message ids, in the order Telegram took their copies into the recipient's chat."""
    ids = []
    for call in copies_to(h, recipient.id, after):
        if call.params.get("from_chat_id") == str(sender.id):
            ids.extend(json.loads(call.params["message_ids"]) if "message_ids" in call.params else
                       [int(call.params["message_id"])])  # fmt: skip
    return ids


def burst(people: list[tuple[Person, Person]], per_side: int) -> dict[tuple[int, int], list[int]]:
    """Every side of every chat sends `per_side` messages at once; (sender, recipient) -> ids in sent order."""
    sent: dict[tuple[int, int], list[int]] = {}
    for round_ in range(per_side):
        for author, guest in people:
            for sender, recipient in ((guest, author), (author, guest)):
                message = sender.send(text=f"сообщение {round_} от {sender.id}")
                sent.setdefault((sender.id, recipient.id), []).append(message["message_id"])
    return sent


def test_a_burst_beyond_telegrams_limits_arrives_whole_once_and_in_order(redis_url: str, sqlite_url: str) -> None:
    # Telegram stricter than the outbox believes: 429s come, globally and per chat, and are sat out.
    h = BoardHarness(redis_url, sqlite_url, flood=FloodLimits(rate=10, burst=10, chat_rate=1, chat_burst=1))
    try:
        people = pairs(h, PAIRS)
        h.settle()
        before = mark(h)
        for author, guest in people:  # updates go in without waiting for the outbox: a burst
            author.deliver = guest.deliver = lambda update: h.feed(update, settle=False)
        sent = burst(people, per_side=3)
        h.settle(timeout=180)
        for author, guest in people:
            for sender, recipient in ((guest, author), (author, guest)):
                assert delivered_ids(h, recipient, sender, before) == sent[(sender.id, recipient.id)]
        assert h.core.flood_refusals > 0 and h.outbox.stats.flood_waits > 0  # Telegram did push back
        assert h.outbox.stats.global_holds > 0
        with h.service.sessions() as session:  # every copy recorded for replies and edits
            assert len(session.scalars(select(BoardMessage)).all()) == 2 * PAIRS * 3
    finally:
        h.close()


def test_one_chatty_pair_cannot_starve_the_other_chats(h: BoardHarness) -> None:
    people = pairs(h, 8)
    h.settle()
    chatty_author, chatty_guest = people[0]
    for person in (chatty_guest, *(guest for _, guest in people[1:])):
        person.deliver = lambda update: h.feed(update, settle=False)
    before = mark(h)
    for index in range(12):
        chatty_guest.send(text=f"болтаю {index}")
    for _, guest in people[1:]:
        guest.send(text="один вопрос")
    h.settle(timeout=120)
    to_chatty = [i for i, c in enumerate(h.core.calls[before:]) if c.ok and c.params.get("chat_id") == str(
        chatty_author.id) and c.method == "copyMessage"]  # fmt: skip
    assert len(to_chatty) == 12
    # Each other chat's one message went out before the chatty pair's sixth (turns are taken round robin).
    for author, _ in people[1:]:
        [index] = [i for i, c in enumerate(h.core.calls[before:]) if c.ok and c.method == "copyMessage" and
                   c.params.get("chat_id") == str(author.id)]  # fmt: skip
        assert index < to_chatty[5]


def test_a_flood_wait_for_a_quiet_chat_holds_every_chat(h: BoardHarness) -> None:
    people = pairs(h, 3)
    h.settle()
    (first_author, first_guest), (second_author, second_guest) = people[0], people[1]
    time.sleep(CHAT_BURST / CHAT_RATE)  # the first chat has been quiet long enough for its full burst again
    # A 429 on a chat that had been quiet cannot be that chat's own limit: the whole bot waits.
    h.core.fail(first_author.id, 429, "Too Many Requests: retry after 2", times=1, retry_after=2)
    before = mark(h)
    first_guest.deliver = lambda update: h.feed(update, settle=False)
    first_guest.send(text="первое")
    refused = h.core.wait_for(lambda c: c.status == 429, 30, after=before, refused=True)
    second_guest.send(text="второе")  # queued right after the 429
    [copy] = copies_to(h, second_author.id, before)
    assert copy.at - refused.at >= 1.9
    assert len(copies_to(h, first_author.id, before)) == 1  # and the held message went after all


def test_a_chats_own_flood_wait_holds_only_that_chat(h: BoardHarness) -> None:
    people = pairs(h, 2)
    h.settle()
    (busy_author, busy_guest), (other_author, other_guest) = people
    for person in (busy_guest, other_guest):
        person.deliver = lambda update: h.feed(update, settle=False)
    before = mark(h)
    busy_guest.send(text="раз")
    h.core.wait_for(lambda c: c.method == "copyMessage", 30, after=before)
    # The chat just took a message: a 429 now is its own limit.
    h.core.fail(busy_author.id, 429, "Too Many Requests: retry after 3", times=1, retry_after=3)
    busy_guest.send(text="два")
    refused = h.core.wait_for(lambda c: c.status == 429, 30, after=before, refused=True)
    other_guest.send(text="другой чат")
    h.settle(timeout=60)
    [other] = copies_to(h, other_author.id, before)
    retried = copies_to(h, busy_author.id, before)[-1]
    assert other.at < retried.at and retried.at - refused.at >= 2.9
    assert h.outbox.stats.global_holds == 0


def test_only_a_permanent_refusal_ends_a_delivery(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST, "en")
    chat_id = open_chat(h, author, guest)
    # Telegram down twice, then a flood wait six times in a row: the message still arrives, nobody is told.
    h.core.fail(AUTHOR, 502, "Bad Gateway", times=2, methods=("copyMessage",))
    h.core.fail(AUTHOR, 429, "Too Many Requests: retry after 1", times=6, retry_after=1, methods=("copyMessage",))
    before = mark(h)
    patient = guest.say("Are you there?")
    assert delivered_ids(h, author, guest, before) == [patient["message_id"]]
    assert len(h.core.refused_to(AUTHOR, before)) == 8 and guest.texts(before) == []
    # 400: the message cannot be copied. It never goes; its sender is told, in their language; the chat goes on.
    h.core.fail(AUTHOR, 400, "Bad Request: message can't be copied", times=1, methods=("copyMessage",))
    before = mark(h)
    refused = guest.say("This one is special")
    assert delivered_ids(h, author, guest, before) == []
    [told] = [c for c in guest.calls(before) if c.method == "sendMessage"]
    side = h.service.active_chats(guest.ref)[0]
    label = t("en", "chat.partner", alias=side.alias, title=side.ad_title)
    assert told.params["text"] == t("en", "relay.not_copied", partner=label)
    assert json.loads(told.params["reply_parameters"])["message_id"] == refused["message_id"]
    before = mark(h)
    after = guest.say("And this one?")
    assert delivered_ids(h, author, guest, before) == [after["message_id"]]
    assert h.service.active_chats(guest.ref)[0].chat_id == chat_id


def test_an_edit_of_a_message_still_queued_travels_with_it(redis_url: str, sqlite_url: str) -> None:
    h = BoardHarness(redis_url, sqlite_url, chat_rate=0.5)
    try:
        author, guest = h.person(AUTHOR), h.person(GUEST)
        open_chat(h, author, guest)
        h.settle()
        guest.deliver = lambda update: h.feed(update, settle=False)
        before = mark(h)
        messages = [guest.say(f"вопрос {i}") for i in range(5)]  # the last ones wait for the chat's pace
        guest.edit(messages[4], text="вопрос 4, исправленный")
        h.settle(timeout=60)
        assert delivered_ids(h, author, guest, before) == [m["message_id"] for m in messages]
        assert [c for c in h.core.calls_to(AUTHOR, before) if c.method.startswith("edit")] == []
        with h.service.sessions() as session:
            stored = session.scalar(
                select(BoardMessage.text).where(BoardMessage.src_message_id == messages[4]["message_id"])
            )
        assert stored == "вопрос 4, исправленный"  # what the copy says, kept for moderation
    finally:
        h.close()


def test_a_message_in_flight_when_the_process_died_is_never_sent_again(redis_url: str, sqlite_url: str) -> None:
    engine, sessions = open_database(sqlite_url)
    service = BoardService(sessions, SecretBox(TEST_SECRET_KEY), BoardLimits())
    try:
        alice, bob = service.user(AUTHOR, "ru"), service.user(GUEST, "en")
        ad = service.create_ad(alice, "Велосипед", "Продаю велосипед, почти новый", "sale").id
        service.decide_invite(alice, service.send_invite(bob, ad, "Hello, still there?").invite_id, True)
        service.enqueue_relay(bob, RelayMessage((77,), "text", "sent just before the crash", None, False))
        relay = next(item for item in service.pending_outbox() if item.kind == "relay")
        assert service.claim_outbox(relay.id) is not None  # ... and the process died here, mid-request
    finally:
        engine.dispose()
    h = BoardHarness(redis_url, sqlite_url)  # the restarted process
    try:
        h.settle()
        assert copies_to(h, AUTHOR) == []  # at most once: maybe Telegram took it, so never again
        [told] = [c for c in h.core.calls_to(GUEST) if c.params.get("text") == t("en", "relay.uncertain")]
        assert json.loads(told.params["reply_parameters"])["message_id"] == 77
        with h.service.sessions() as session:
            assert session.scalar(select(BoardOutbox.state).where(BoardOutbox.id == relay.id)) == "unknown"
    finally:
        h.close()


def test_what_other_processes_queue_is_sent_too(h: BoardHarness, sqlite_url: str) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    chat_id = open_chat(h, author, guest)
    report = h.service.report(author.ref, ReportTarget.CHAT, chat_id, "rude")
    # The admin bot or the CLI, in another process: same database, no way to wake this outbox.
    engine, sessions = open_database(sqlite_url)
    try:
        elsewhere = BoardService(sessions, SecretBox(TEST_SECRET_KEY), BoardLimits())
        before = mark(h)
        elsewhere.ban(report, "cli:moderator")
    finally:
        engine.dispose()
    wait_until(lambda: guest.texts(before) == [t("ru", "ban.notice")], 30, message="the banned person is told")
    wait_until(lambda: any("модератором" in text for text in author.texts(before)), 30, message="partner told")


def test_outbox_ids_only_grow(database_url: str) -> None:
    engine, sessions = open_database(database_url)
    try:
        service = BoardService(sessions, SecretBox(TEST_SECRET_KEY), BoardLimits())
        user = service.user(AUTHOR)
        service.enqueue_notice(user.id, "bot.help")
        [first] = service.pending_outbox()
        service.claim_outbox(first.id)
        service.outbox_sent(first.id, [1])  # sent: the row is deleted
        service.enqueue_notice(user.id, "bot.help")
        [second] = service.pending_outbox()
        assert second.id > first.id  # a reused id would sit below the sender's watermark, unseen for a while
        with service.sessions.begin() as session:
            session.execute(update(BoardOutbox).values(state=OutboxState.SENDING.value))
        assert service.outbox_interrupted() == 1 and service.pending_outbox() == []
    finally:
        engine.dispose()


def test_a_redelivered_update_queues_its_relay_once(h: BoardHarness) -> None:
    author, guest = h.person(AUTHOR), h.person(GUEST)
    open_chat(h, author, guest)
    before = mark(h)
    message = guest.message(text="один раз")
    update = {"update_id": 77_777, "message": message}
    for _ in range(2):  # Telegram delivers an unconfirmed update again after a crash: before it was sent...
        h._run(h.dispatcher.feed_update(h.bot, Update.model_validate(update, context={"bot": h.bot})))
    h.settle()
    h._run(h.dispatcher.feed_update(h.bot, Update.model_validate(update, context={"bot": h.bot})))  # ... and after
    h.settle()
    with h.service.sessions() as session:  # the row's key outlives its sending (a day), so it is queued once
        assert session.scalar(select(BoardOutbox.state).where(BoardOutbox.dedup_key.like("relay:%"))) == "sent"
    time.sleep(0.2)
    assert delivered_ids(h, author, guest, before) == [message["message_id"]]


def test_a_flood_into_one_chat_waits_in_the_table_and_arrives_whole_in_order(redis_url: str, sqlite_url: str) -> None:
    # A chat pace both sides agree on, fast enough that a flood of several times what the outbox holds per chat
    # is quick, slow enough that the flood is still going out when the others write.
    h = BoardHarness(redis_url, sqlite_url, chat_rate=10, flood=FloodLimits(chat_rate=10, chat_burst=3))
    try:
        people = pairs(h, 4)
        h.settle()
        (flooded, flooder), others = people[0], people[1:]
        for person in (flooder, *(guest for _, guest in others)):
            person.deliver = lambda update: h.feed(update, settle=False)
        before = mark(h)
        flood = [flooder.send(text=f"флуд {index}")["message_id"] for index in range(3 * PER_CHAT_LOADED)]
        sent_at: dict[int, int] = {}
        for author, guest in others:
            sent_at[author.id] = mark(h)
            guest.send(text="а у нас тихо")
        h.settle(timeout=120)
        assert delivered_ids(h, flooded, flooder, before) == flood  # all of it, in order

        def copies_to_flooded(calls: list) -> int:
            return sum(c.ok and c.method == "copyMessage" and c.params["chat_id"] == str(flooded.id) for c in calls)

        for author, _ in others:  # the others did not wait for the flood: at most one loaded batch of it went first
            [index] = [
                i
                for i, c in enumerate(h.core.calls)
                if i >= before and c.ok and c.method == "copyMessage" and c.params["chat_id"] == str(author.id)
            ]
            went_first = copies_to_flooded(h.core.calls[sent_at[author.id] : index])
            assert went_first < PER_CHAT_LOADED, f"{went_first} of the flood went out before a quiet chat's message"
    finally:
        h.close()
