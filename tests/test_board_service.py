"""The board's rules on their own: ads, the one first message, chats, blocks, reports, bans, statistics, spam.

Against real SQLite and PostgreSQL databases; a refused action must change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from board.errors import BoardError
from board.service import PER_PAGE, BoardService, UserRef
from board.spam import SpamReason, spam_reason
from celery_app.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardInvite, BoardUser, ReportTarget
from database.engine import open_database
from tests.support.stack import TEST_SECRET_KEY


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


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
    assert sent.message == "Is it still available?" and sent.author.tg_id == 1 and sent.author.lang == "ru"
    refused("already_invited", service.send_invite, bob, ad, "Please answer")
    refused("own_ad", service.send_invite, alice, ad, "Talking to myself")
    refused("ad_not_found", service.send_invite, bob, "nope", "Hello there")
    refused("message_empty", service.send_invite, service.user(3), ad, "   ")
    refused("message_too_long", service.send_invite, service.user(3), ad, "z" * 4097)
    service.decide_invite(alice, sent.invite_id, False)
    refused("already_invited", service.send_invite, bob, ad, "Why not?")  # ever, even after a decline
    with service.sessions() as session:
        assert session.scalar(select(BoardInvite.status)) == "declined"


def test_the_daily_invite_limit(service: BoardService, clock: Clock) -> None:
    bob = service.user(2)
    ads = [ad_of(service, service.user(100 + i), f"Item {i} for sale in the city") for i in range(11)]
    messages = ["Hello, I like it", "Good day, still there?", "Can we meet tomorrow", "What is the price now",
                "Is delivery possible", "Any discount for me", "Where are you located", "Photos please",
                "Still available today", "Can I see it soon"]  # fmt: skip
    for ad, message in zip(ads, messages, strict=False):
        service.send_invite(bob, ad, message)
    refused("invite_limit", service.send_invite, bob, ads[10], "One more question here")
    clock.now += timedelta(days=1, minutes=1)
    service.send_invite(bob, ads[10], "One more question here")


def test_accept_opens_an_anonymous_chat(service: BoardService) -> None:
    alice, bob = service.user(1), service.user(2)
    ad = ad_of(service, alice)
    sent = service.send_invite(bob, ad, "Hello there")
    refused("invite_not_found", service.decide_invite, bob, sent.invite_id, True)  # only the author decides
    decision = service.decide_invite(alice, sent.invite_id, True)
    assert decision.accepted and decision.guest is not None and decision.guest.tg_id == 2
    assert decision.author_alias.startswith("#") and decision.author_alias != decision.guest_alias
    refused("invite_decided", service.decide_invite, alice, sent.invite_id, False)
    [alice_side] = service.active_chats(alice)
    [bob_side] = service.active_chats(bob)
    assert alice_side.alias == decision.author_alias and bob_side.alias == decision.guest_alias
    assert alice_side.partner.tg_id == 2 and bob_side.partner.tg_id == 1
    assert alice_side.ad_title == "Bicycle for sale"


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
    assert [(side.chat_id, dst) for side, dst, _kind in service.relayed_copies(alice, 56)] == [(chat.chat_id, 12)]
    service.end_chat(bob, chat.chat_id)
    refused("chat_ended", service.chat_side, alice, chat.chat_id)
    assert service.relayed_copies(alice, 56) == []
    refused("chat_not_found", service.chat_side, service.user(3), chat.chat_id)


def test_block_ends_every_chat_and_forbids_new_ones(service: BoardService) -> None:
    alice, bob = service.user(1), service.user(2)
    first = service.decide_invite(alice, service.send_invite(bob, ad_of(service, alice), "Hi there").invite_id, True)
    second_ad = ad_of(service, alice, "Piano for sale", "sale")
    second = service.decide_invite(alice, service.send_invite(bob, second_ad, "Piano?").invite_id, True)
    assert first.chat_id and second.chat_id
    ended = service.block(alice, first.chat_id)
    assert ended.partner.tg_id == 2 and ended.partner_alias == first.guest_alias
    assert service.active_chats(alice) == [] and service.active_chats(bob) == []
    refused("blocked", service.send_invite, bob, ad_of(service, alice, "Drum kit", "sale"), "Drums?")
    # and the other way round: the blocker cannot reach the blocked either
    refused("blocked", service.send_invite, alice, ad_of(service, bob, "Bass guitar", "sale"), "Bass?")


def test_an_unreachable_partner_ends_the_chat(service: BoardService) -> None:
    alice, bob = service.user(1), service.user(2)
    chat = service.decide_invite(alice, service.send_invite(bob, ad_of(service, alice), "Hi there").invite_id, True)
    assert chat.chat_id
    ended = service.end_unreachable(chat.chat_id, bob.id)
    assert ended is not None and ended.partner.tg_id == 2 and ended.alias == chat.author_alias  # as alice saw it
    assert service.active_chats(alice) == []
    assert service.end_unreachable(chat.chat_id, bob.id) is None


def test_reports_hide_an_ad_and_moderation_settles_them(service: BoardService) -> None:
    alice = service.user(1)
    ad = ad_of(service, alice)
    reporters = [service.user(10 + i) for i in range(3)]
    report_ids = [service.report(r, ReportTarget.AD, ad, "scam") for r in reporters[:2]]
    refused("already_reported", service.report, reporters[0], ReportTarget.AD, ad, "again")
    refused("own_ad", service.report, alice, ReportTarget.AD, ad, "me")
    assert service.get_ad(reporters[2], ad).status == "open"
    report_ids.append(service.report(reporters[2], ReportTarget.AD, ad, "scam"))
    refused("ad_not_found", service.get_ad, reporters[2], ad)  # hidden from everyone but its author
    assert service.get_ad(alice, ad).status == "hidden"
    queue = service.report_queue()
    assert [r.id for r in queue] == report_ids and queue[0].content.startswith("Bicycle for sale")
    assert queue[0].reported == alice.public_id
    for report_id in report_ids:
        service.dismiss(report_id, "bot:1")
    assert service.get_ad(reporters[0], ad).status == "open"  # nothing wrong: it comes back
    assert service.report_queue() == []


def test_a_ban_stops_everything_the_user_does(service: BoardService) -> None:
    alice, bob = service.user(1), service.user(2)
    ad = ad_of(service, alice)
    chat = service.decide_invite(alice, service.send_invite(bob, ad, "Hi there").invite_id, True)
    assert chat.chat_id
    service.record_relay(bob, chat.chat_id, [(1, 2)], "text", "rude words")
    report = service.report(alice, ReportTarget.CHAT, chat.chat_id, "rude")
    view = service.get_report(report)
    assert view.last_messages == [(bob.public_id, "text", "rude words")] and view.reported == bob.public_id
    assert service.ban(report, "bot:1").reported_banned
    banned = service.user(2)
    assert banned.banned
    refused("banned", ad_of, service, banned, "A new start here")
    refused("banned", service.send_invite, banned, ad_of(service, service.user(3), "Chair for sale"), "Hi there")
    refused("banned", service.report, banned, ReportTarget.AD, ad, "revenge")
    refused("banned", service.chat_side, banned, chat.chat_id)
    assert service.active_chats(alice) == []
    assert service.report_queue() == []


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


def test_a_settled_report_is_not_undone_by_a_stale_action(service: BoardService) -> None:
    alice = service.user(1)
    ad = ad_of(service, alice)
    reports = [service.report(service.user(10 + i), ReportTarget.AD, ad, "scam") for i in range(3)]
    service.hide_ad(reports[0], "bot:1")  # settles every report of the ad
    refused("report_closed", service.dismiss, reports[1], "bot:2")  # a second moderator's outdated card
    refused("report_closed", service.ban, reports[2], "bot:2")
    assert service.get_ad(alice, ad).status == "hidden"
    assert service.get_report(reports[1]).status == "actioned"


def test_public_ids_never_look_like_options() -> None:
    from board.service import new_public_id

    assert all(new_public_id()[0].isalnum() for _ in range(2000))
