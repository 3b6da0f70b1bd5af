"""The board's rules on their own: ads, the one first message, chats, blocks, reports, bans, statistics, spam.

Against real SQLite and PostgreSQL databases; a refused action must change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from board.errors import BoardError
from board.service import PER_PAGE, BoardService, RelayMessage, UserRef
from board.spam import SpamReason, spam_reason
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import INVITE_MAX, BoardInvite, BoardUser, ReportTarget
from database.engine import open_database
from tests.support.board_moderation import Clock
from tests.support.stack import TEST_SECRET_KEY


@pytest.fixture
def service(database_url: str, clock: Clock) -> Iterator[BoardService]:
    engine, sessions = open_database(database_url)
    yield BoardService(sessions, SecretBox(TEST_SECRET_KEY), BoardLimits(stop_words=("casino",)), clock=clock)
    engine.dispose()


def refused(code: str, action: object, *args: object, **kwargs: object) -> BoardError:
    with pytest.raises(BoardError) as raised:
        action(*args, **kwargs)  # type: ignore[operator]
    assert raised.value.code == code, raised.value.code
    return raised.value


def ad_of(service: BoardService, author: UserRef, title: str = "Bicycle for sale", category: str = "sale") -> str:
    return service.create_ad(author, title, f"{title}: in good condition, ask me anything", category).id


def test_a_telegram_id_is_stored_only_encrypted_and_hashed(service: BoardService) -> None:
    alice = service.user(777000111, "ru")
    assert service.user(777000111).id == alice.id  # found again by the keyed hash
    with service.sessions() as session:
        row = session.scalar(select(BoardUser).where(BoardUser.id == alice.id))
        assert row is not None
        dumped = " ".join(str(value) for value in session.execute(text("SELECT * FROM board_users")).one())
    assert "777000111" not in dumped
    assert row.tg_lookup != "777000111" and len(row.tg_lookup) == 64


def test_ads_are_listed_newest_first_paged_and_filtered(service: BoardService, clock: Clock) -> None:
    authors = [service.user(1000 + i) for i in range(12)]
    for index, author in enumerate(authors * 2):
        clock.now += timedelta(minutes=1)
        category = "jobs" if index % 2 else "sale"
        ad_of(service, author, f"Offer number {index} {'violin' if index == 5 else 'item'}", category)
    viewer = service.user(1)
    first = service.list_ads(viewer)
    assert first.total == 24 and first.pages == 2 and len(first.ads) == PER_PAGE
    assert first.ads[0].title.startswith("Offer number 23")
    assert len(service.list_ads(viewer, page=1).ads) == 4
    assert {a.category for a in service.list_ads(viewer, category="jobs").ads} == {"jobs"}
    found = service.list_ads(viewer, q="VIOLIN")
    assert [a.title for a in found.ads] == ["Offer number 5 violin"]
    assert service.list_ads(viewer, q="100%_").total == 0  # LIKE wildcards are literal
    refused("bad_category", service.list_ads, viewer, category="weapons")


def test_ads_expire_and_close(service: BoardService, clock: Clock) -> None:
    alice, bob = service.user(1), service.user(2)
    ad = ad_of(service, alice)
    refused("not_your_ad", service.close_ad, bob, ad)
    assert service.close_ad(alice, ad).status == "closed"
    assert service.list_ads(bob).total == 0
    other = ad_of(service, alice, "Guitar lessons", "services")
    clock.now += timedelta(days=31)
    assert service.list_ads(bob).total == 0
    assert service.get_ad(bob, other).status == "expired"
    refused("ad_closed", service.send_invite, bob, other, "Hello there")


def test_ad_limits_and_validation(service: BoardService) -> None:
    alice = service.user(1)
    refused("title_empty", service.create_ad, alice, "  ", "text", "sale")
    refused("title_too_long", service.create_ad, alice, "x" * 101, "text", "sale")
    refused("text_too_long", service.create_ad, alice, "Title", "y" * 2001, "sale")
    refused("bad_category", service.create_ad, alice, "Title", "text", "nope")
    refused("title_empty", service.create_ad, alice, 5, "text", "sale")
    for title in ("Selling a lamp", "Teaching maths", "Lost a cat nearby"):
        ad_of(service, alice, title, "other")
    refused("ad_limit", ad_of, service, alice, "One more thing to sell")
    assert len(service.my_ads(alice)) == 3


def test_one_first_message_per_sender_and_ad_ever(service: BoardService) -> None:
    alice, bob = service.user(1, "ru"), service.user(2, "en")
    ad = ad_of(service, alice)
    sent = service.send_invite(bob, ad, "  Is it still available?  ")
    assert sent.ad_title == "Bicycle for sale"
    with service.sessions() as session:
        assert session.scalar(select(BoardInvite.message)) == "Is it still available?"
    # The card for the author is queued with it, in the same transaction.
    assert [(i.recipient_id, i.kind, i.payload) for i in service.pending_outbox()] == [
        (alice.id, "invite", {"invite": sent.invite_id})
    ]
    refused("already_invited", service.send_invite, bob, ad, "Please answer")
    refused("own_ad", service.send_invite, alice, ad, "Talking to myself")
    refused("ad_not_found", service.send_invite, bob, "nope", "Hello there")
    refused("message_empty", service.send_invite, service.user(3), ad, "   ")
    refused("message_empty", service.send_invite, service.user(3), ad, "\u200b\u2060\u200b")
    refused("message_too_long", service.send_invite, service.user(3), ad, "z" * (INVITE_MAX + 1))
    service.decide_invite(alice, sent.invite_id, False)
    refused("already_invited", service.send_invite, bob, ad, "Why not?")  # ever, even after a decline
    with service.sessions() as session:
        assert session.scalar(select(BoardInvite.status)) == "declined"
    assert len(service.pending_outbox()) == 1  # a decline tells the sender nothing


def test_the_daily_invite_limit(service: BoardService, clock: Clock) -> None:
    bob = service.user(2)
    ads = [ad_of(service, service.user(100 + i), f"Item {i} for sale in the city") for i in range(11)]
    messages = ["Hello, I like it", "Good day, still there?", "Can we meet tomorrow", "What is the price now",
                "Is delivery possible", "Any discount for me", "Where are you located", "Photos please",
                "Still available today", "Can I see it soon"]  # fmt: skip
    for ad, message in zip(ads, messages, strict=False):
        service.send_invite(bob, ad, message)
    error = refused("invite_limit", service.send_invite, bob, ads[10], "One more question here")
    assert error.status == 429 and error.values == {"limit": 10}
    clock.now += timedelta(days=1, minutes=1)
    service.send_invite(bob, ads[10], "One more question here")


def test_accept_opens_an_anonymous_chat(service: BoardService) -> None:
    alice, bob = service.user(1), service.user(2)
    ad = ad_of(service, alice)
    sent = service.send_invite(bob, ad, "Hello there")
    refused("invite_not_found", service.decide_invite, bob, sent.invite_id, True)  # only the author decides
    decision = service.decide_invite(alice, sent.invite_id, True)
    assert decision.accepted and decision.author_alias.startswith("#")
    refused("invite_decided", service.decide_invite, alice, sent.invite_id, False)
    [alice_side] = service.active_chats(alice)
    [bob_side] = service.active_chats(bob)
    assert alice_side.alias == decision.author_alias and bob_side.alias.startswith("#")
    assert bob_side.alias != alice_side.alias
    assert (alice_side.partner_user_id, bob_side.partner_user_id) == (bob.id, alice.id)
    assert alice_side.ad_title == "Bicycle for sale"
    # The guest hears of it through the outbox, named as they see the author.
    told = [i for i in service.pending_outbox() if i.recipient_id == bob.id]
    assert [i.payload["key"] for i in told] == ["invite.accepted_guest"]
    assert told[0].payload["values"]["partner"] == {"$t": "chat.partner", "alias": bob_side.alias,
                                                   "title": "Bicycle for sale"}  # fmt: skip
    assert telegram_ids_absent(service)


def telegram_ids_absent(service: BoardService) -> bool:
    """No outbox row names a Telegram id (people are board user ids there)."""
    return all("777" not in json.dumps(item.payload) for item in service.pending_outbox())


def test_relayed_messages_map_replies_and_edits(service: BoardService) -> None:
    alice, bob = service.user(1), service.user(2)
    chat = service.decide_invite(alice, service.send_invite(bob, ad_of(service, alice), "Hi there").invite_id, True)
    assert chat.chat_id is not None
    service.record_relay(bob, chat.chat_id, [(10, 900)], "text", "first")
    service.record_relay(alice, chat.chat_id, [(55, 11), (56, 12)], "photo", "album caption")
    assert service.chat_of_reply(alice, 900) == chat.chat_id  # a message alice received
    assert service.chat_of_reply(alice, 55) == chat.chat_id  # one she sent
    assert service.chat_of_reply(alice, 12345) is None
    assert service.counterpart(alice, chat.chat_id, 900) == 10  # her reply to it lands on bob's original
    assert service.counterpart(bob, chat.chat_id, 11) == 55
    before = len(service.pending_outbox())
    assert service.enqueue_edit(alice, 56, "new caption", True, []) == 1
    [edit] = service.pending_outbox()[before:]
    assert edit.recipient_id == bob.id and edit.payload["caption"] == "new caption" and edit.payload["src"] == 56
    service.end_chat(bob, chat.chat_id)
    refused("chat_ended", service.chat_side, alice, chat.chat_id)
    assert service.enqueue_edit(alice, 56, "again", True, []) == 0  # an ended chat takes no edits
    refused("chat_not_found", service.chat_side, service.user(3), chat.chat_id)


def test_a_relay_is_queued_once_in_the_chat_it_belongs_to(service: BoardService) -> None:
    alice, bob, carol = service.user(1), service.user(2), service.user(3)
    bike = service.decide_invite(alice, service.send_invite(bob, ad_of(service, alice), "Hi there").invite_id, True)
    piano = ad_of(service, alice, "Piano for sale in the city")
    sofa = service.decide_invite(alice, service.send_invite(carol, piano, "Piano?").invite_id, True)
    assert bike.chat_id and sofa.chat_id
    message = RelayMessage((41,), "text", "hello", None, False)
    assert service.enqueue_relay(bob, message).outcome == "queued"
    assert service.enqueue_relay(bob, message).outcome == "queued"  # a redelivered update: queued once
    relays = [i for i in service.pending_outbox() if i.kind == "relay"]
    assert [(i.recipient_id, i.payload["chat"]) for i in relays] == [(alice.id, bike.chat_id)]
    route = service.enqueue_relay(alice, RelayMessage((7,), "text", "to whom?", None, False))
    assert route.outcome == "choose" and {c.chat_id for c in route.chats} == {bike.chat_id, sofa.chat_id}
    assert service.enqueue_relay(alice, RelayMessage((7,), "text", "x", None, False), sofa.chat_id).side
    service.record_relay(bob, bike.chat_id, [(41, 501)], "text", "hello")
    reply = RelayMessage((8,), "text", "yes", 501, False)  # a reply picks the chat
    assert service.enqueue_relay(alice, reply).side.chat_id == bike.chat_id  # type: ignore[union-attr]
    service.end_chat(bob, bike.chat_id)
    assert service.enqueue_relay(alice, RelayMessage((9,), "text", "?", 501, False)).outcome == "ended"


def test_an_unreachable_partner_ends_the_chat(service: BoardService) -> None:
    alice, bob = service.user(1), service.user(2)
    chat = service.decide_invite(alice, service.send_invite(bob, ad_of(service, alice), "Hi there").invite_id, True)
    assert chat.chat_id
    service.enqueue_relay(alice, RelayMessage((5,), "text", "hello", None, False))
    relay = next(i for i in service.pending_outbox() if i.kind == "relay")
    assert service.claim_outbox(relay.id) is not None
    service.outbox_refused(relay.id, "blocked")  # Telegram said 403: bob blocked the bot
    assert service.active_chats(alice) == []
    told = [i for i in service.pending_outbox() if i.recipient_id == alice.id and i.kind == "notice"]
    assert [i.payload["key"] for i in told] == ["chat.partner_gone"]
    assert told[0].payload["values"]["partner"]["alias"] == chat.author_alias  # as alice sees bob


def test_statistics_count_what_happened(service: BoardService, clock: Clock) -> None:
    alice, bob, carol = service.user(1), service.user(2), service.user(3)
    ad = ad_of(service, alice)
    service.decide_invite(alice, service.send_invite(bob, ad, "Hi there").invite_id, True)
    service.decide_invite(alice, service.send_invite(carol, ad, "Hello, me too").invite_id, False)
    service.report(bob, ReportTarget.AD, ad, "spam")
    stats = service.stats(7)
    assert (stats.ads_posted, stats.ads_open, stats.invites_sent) == (1, 1, 2)
    assert (stats.invites_accepted, stats.invites_declined, stats.accept_rate) == (1, 1, 0.5)
    assert (stats.chats_active, stats.reports_open, stats.reports_new) == (1, 1, 1)
    assert len(stats.per_day) == 7 and stats.per_day[-1]["invites"] == 2
    clock.now += timedelta(days=2)
    assert service.stats(1).invites_sent == 0


def test_history_is_pruned_after_its_days(service: BoardService, clock: Clock) -> None:
    alice, bob = service.user(1), service.user(2)
    chat = service.decide_invite(alice, service.send_invite(bob, ad_of(service, alice), "Hi there").invite_id, True)
    assert chat.chat_id
    service.record_relay(bob, chat.chat_id, [(1, 2)], "text", "old")
    clock.now += timedelta(days=31)
    service.record_relay(bob, chat.chat_id, [(3, 4)], "text", "new")
    assert service.prune_history() == 1
    assert service.counterpart(alice, chat.chat_id, 4) == 3


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Visit https://example.com now", SpamReason.LINK),
        ("write to @some_seller_bot", SpamReason.LINK),
        ("t.me/joinchat/abc", SpamReason.LINK),
        ("Best CASINO in town", SpamReason.STOP_WORD),
        ("buy buy buy buy buy buy buy buy", SpamReason.REPEATED),
        ("!!!!!!!!!!!!!!!!!!", SpamReason.REPEATED),
        ("A bicycle, barely used, 100 euros", None),
        ("Пишите в личку, отвечу быстро", None),
        ("my email is not a link: name at mail", None),
    ],
)
def test_the_spam_filter(text: str, reason: str | None) -> None:
    assert spam_reason(text, ("casino",)) == reason


def test_a_flood_of_similar_texts_is_refused(service: BoardService) -> None:
    bob = service.user(2)
    ads = [ad_of(service, service.user(100 + i), f"Item {i} for sale near the park") for i in range(4)]
    service.send_invite(bob, ads[0], "Hello! I want to buy it today, call me")
    service.send_invite(bob, ads[1], "Hello! I want to buy it today, call me!")
    refused("spam_flood", service.send_invite, bob, ads[2], "Hello!! I want to buy it today, call me")
    refused("spam_stop_word", service.send_invite, bob, ads[3], "casino night tonight")
    with service.sessions() as session:
        assert len(session.scalars(select(BoardInvite)).all()) == 2


def test_public_ids_never_look_like_options() -> None:
    from board.services.base import new_public_id

    assert all(new_public_id()[0].isalnum() for _ in range(2000))
