"""Moderation, on SQLite and PostgreSQL: the moderator acts on a reporter in one step; a report answers as
opening the ad would; a ban tells each partner and the banned person, once; a stale moderator action is refused
saying who settled the report. (`test_board_ad_states.py`: the ad's state machine; `test_board_reports.py`:
limits and weights of reports.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from board.errors import BoardError
from board.service import BoardService, UserRef
from board.views import ModerationOutcome
from database.board_models import BoardChat, ReportTarget
from tests.support.board_moderation import (
    CLOSED,
    EXPIRED,
    HIDDEN,
    OPEN,
    REPORTED,
    Clock,
    ServiceFactory,
    aged,
    events,
    last_outbox_id,
    notices,
    post,
    refused,
    report_ad,
    report_count,
    status,
)

# ---- acting on a reporter ---------------------------------------------------------------------------------


class Weaponised:
    """Mallory reports ads A, B and C; Eve (honest) reports A and B. Two full reports hide an ad: A and B are
    hidden by reports, C (only Mallory's) is open."""

    def __init__(self, service: BoardService) -> None:
        self.service = service
        self.mallory, self.eve = aged(service, 10), aged(service, 11)
        self.a, self.b, self.c = (post(service, service.user(100 + i)) for i in range(3))
        self.by_mallory = [report_ad(service, self.mallory, ad) for ad in (self.a, self.b, self.c)]
        self.by_eve = [report_ad(service, self.eve, ad) for ad in (self.a, self.b)]
        assert [status(service, ad) for ad in (self.a, self.b, self.c)] == [REPORTED, REPORTED, OPEN]

    def statuses(self) -> list[str]:
        return [status(self.service, ad) for ad in (self.a, self.b, self.c)]

    def queue(self) -> set[str]:
        return {r.id for r in self.service.report_queue(100)}


def test_reporter_reach_counts_what_acting_on_the_reporter_touches(make_service: ServiceFactory) -> None:
    board = Weaponised(make_service(hide_after_reports=2))
    assert board.service.reporter_reach(board.by_mallory[0]) == ModerationOutcome(3, 2)
    assert board.service.reporter_reach(board.by_eve[0]) == ModerationOutcome(2, 2)
    refused("report_not_found", board.service.reporter_reach, "no-such-report")


def test_dismiss_reporter_dismisses_all_of_theirs_in_one_step(make_service: ServiceFactory) -> None:
    board = Weaponised(make_service(hide_after_reports=2))
    outcome = board.service.dismiss_reporter(board.by_mallory[1], "anna")
    assert outcome == ModerationOutcome(3, 2)
    assert board.statuses() == [OPEN, OPEN, OPEN]  # Eve's reports alone weigh too little
    assert board.queue() == set(board.by_eve)
    assert {board.service.get_report(r).status for r in board.by_mallory} == {"dismissed"}
    assert events(board.service, board.a) == [
        (OPEN, REPORTED, "board", "reports"),
        (REPORTED, OPEN, "anna", "reviewed"),
    ]
    assert board.service.dismiss_reporter(board.by_mallory[1], "anna") == ModerationOutcome(0, 0)  # nothing left


def test_restore_reporter_gives_back_every_ad_their_reports_hid(make_service: ServiceFactory) -> None:
    board = Weaponised(make_service(hide_after_reports=2))
    outcome = board.service.restore_reporter(board.by_mallory[0], "anna")
    assert outcome == ModerationOutcome(4, 2)  # every open report on A and B (a review of each), two ads back
    assert board.statuses() == [OPEN, OPEN, OPEN]
    assert board.queue() == {board.by_mallory[2]}  # the report on C hid nothing: it waits for review
    assert events(board.service, board.b)[-1] == (REPORTED, OPEN, "anna", "restored")
    assert board.service.restore_reporter(board.by_mallory[0], "anna") == ModerationOutcome(0, 0)


def test_ban_reporter_bans_dismisses_and_restores(make_service: ServiceFactory) -> None:
    board = Weaponised(make_service(hide_after_reports=2))
    before = last_outbox_id(board.service)
    outcome = board.service.ban_reporter(board.by_mallory[2], "anna")
    assert outcome == ModerationOutcome(3, 2)
    assert board.service.user(10).banned
    assert board.statuses() == [OPEN, OPEN, OPEN]
    assert board.queue() == set(board.by_eve)
    assert notices(board.service, before) == [(board.mallory.id, "ban.notice")]
    refused("banned", report_ad, board.service, board.mallory, post(board.service, board.service.user(200)))


# ---- what a report answers ----------------------------------------------------------------------------------


def same_refusal(first: Callable[[], object], second: Callable[[], object]) -> BoardError:
    with pytest.raises(BoardError) as one:
        first()
    with pytest.raises(BoardError) as other:
        second()
    a, b = one.value, other.value
    assert (a.code, a.status, a.field, a.values) == (b.code, b.status, b.field, b.values)
    return a


def test_a_report_on_a_hidden_ad_answers_as_opening_it(make_service: ServiceFactory) -> None:
    service = make_service(hide_after_reports=1)
    author, viewer = service.user(1), aged(service, 2)
    reported, hidden = post(service, author), post(service, author)
    report_ad(service, aged(service, 10), reported)
    assert status(service, reported) == REPORTED
    service.hide_ad(report_ad(service, aged(service, 11), hidden), "anna")
    assert status(service, hidden) == HIDDEN
    before = report_count(service)
    for ad in (reported, hidden, "no-such-ad", "x" * 300):
        error = same_refusal(lambda ad=ad: service.get_ad(viewer, ad), lambda ad=ad: report_ad(service, viewer, ad))
        assert (error.code, error.status) == ("ad_not_found", 404)
    assert report_count(service) == before
    # Its author sees it, and may not report their own.
    assert service.get_ad(author, hidden).status == HIDDEN
    refused("own_ad", report_ad, service, author, hidden)


def test_a_report_on_an_ad_of_a_banned_author_is_already_handled(make_service: ServiceFactory, clock: Clock) -> None:
    service = make_service(ad_days=30, hide_after_reports=5)
    author, other = service.user(1), service.user(2)
    expired = post(service, author)
    clock.now += timedelta(days=31)
    assert service.expire_ads() == 1
    live, closed = post(service, author), post(service, author)
    service.close_ad(author, closed)
    untouched = post(service, other)
    service.ban(report_ad(service, aged(service, 10), live), "anna")
    assert [status(service, ad) for ad in (live, closed, expired)] == [HIDDEN, CLOSED, EXPIRED]

    reporter = aged(service, 11)
    before = report_count(service)
    for ad in (closed, expired):
        assert service.get_ad(reporter, ad).status in (CLOSED, EXPIRED)
        error = refused("already_handled", report_ad, service, reporter, ad)
        assert error.status == 409
    # The ad the ban hid answers as any hidden ad: not found, exactly as opening it.
    error = same_refusal(lambda: service.get_ad(reporter, live), lambda: report_ad(service, reporter, live))
    assert error.code == "ad_not_found"
    assert report_count(service) == before
    report_ad(service, reporter, untouched)  # others' ads are reported as before


# ---- a ban and who hears of it ------------------------------------------------------------------------------


def accepted_chat(service: BoardService, author: UserRef, guest: UserRef, ad: str, message: str) -> str:
    decision = service.decide_invite(author, service.send_invite(guest, ad, message).invite_id, True)
    assert decision.chat_id
    return decision.chat_id


def test_a_ban_tells_each_partner_and_the_banned_person_once(make_service: ServiceFactory) -> None:
    service = make_service(hide_after_reports=5)
    alice = service.user(1, "en")
    bob, carol, dave, erin = (service.user(2 + i, "ru") for i in range(4))
    first, second = post(service, alice), post(service, alice)
    with_bob = accepted_chat(service, alice, bob, first, "Hello, is the thing still there?")
    accepted_chat(service, alice, carol, first, "Good day! Can I see it tomorrow?")
    dave_first = accepted_chat(service, alice, dave, first, "Hi, what condition is it in?")
    accepted_chat(service, alice, dave, second, "And this one, how old is it?")
    with_erin = accepted_chat(service, alice, erin, second, "Would you deliver to the centre?")
    service.block(dave, dave_first)  # dave leaves his other chat with alice silently
    service.end_chat(erin, with_erin)  # erin's chat is over already
    partners = {side.partner_user_id: side for side in service.active_chats(alice)}
    assert set(partners) == {bob.id, carol.id, dave.id}  # dave's remaining chat: alice's, silent for him
    seen_by = {user.id: service.active_chats(user) for user in (bob, carol)}

    before = last_outbox_id(service)
    report = service.report(bob, ReportTarget.CHAT, with_bob, "insults")
    view = service.ban(report, "anna", "insults")
    assert (view.status, view.reported_banned) == ("actioned", True)
    told = notices(service, before)
    assert sorted(told) == sorted([(bob.id, "chat.ended_banned"), (carol.id, "chat.ended_banned"),
                                   (alice.id, "ban.notice")])  # fmt: skip
    for item in service.pending_outbox(before):
        if item.payload["key"] == "chat.ended_banned":
            [side] = seen_by[item.recipient_id]
            # Named as the partner knew them: their alias and the ad's title.
            assert item.payload["values"]["partner"] == {"$t": "chat.partner", "alias": side.alias,
                                                          "title": side.ad_title}  # fmt: skip
    assert all(service.active_chats(user) == [] for user in (alice, bob, carol, dave))
    # Told in their own language (rendered when sent): English for alice.
    [ban_notice] = [i for i in service.pending_outbox(before) if i.payload["key"] == "ban.notice"]
    prepared = service.claim_outbox(ban_notice.id)
    assert prepared is not None and prepared.lang == "en"

    # A second ban, through another report about her, tells nobody again.
    before = last_outbox_id(service)
    again = service.report(carol, ReportTarget.CHAT, service_chat_of(service, carol), "threats")
    service.ban(again, "boris")
    assert notices(service, before) == []
    assert service.user(1).banned


def service_chat_of(service: BoardService, user: UserRef) -> str:
    """The public id of the (only) chat `user` was in."""
    with service.sessions() as session:
        chat_id = session.scalar(
            select(BoardChat.public_id).where((BoardChat.author_id == user.id) | (BoardChat.guest_id == user.id))
        )
    assert chat_id is not None
    return chat_id


# ---- stale moderator actions --------------------------------------------------------------------------------


def test_a_settled_report_is_refused_saying_who_settled_it(make_service: ServiceFactory) -> None:
    service = make_service(hide_after_reports=5)
    reporter = aged(service, 10)
    ads = [post(service, service.user(100 + i)) for i in range(3)]
    dismissed, hidden, banned = (report_ad(service, reporter, ad) for ad in ads)
    service.dismiss(dismissed, "anna")
    service.hide_ad(hidden, "anna")
    service.ban(banned, "anna")
    for report in (dismissed, hidden, banned):
        for action in (service.dismiss, service.hide_ad, service.ban):
            assert refused("report_closed_by_you", action, report, "anna").status == 409
            assert refused("report_closed", action, report, "boris").status == 409
        assert service.get_report(report).resolved_by == "anna"
    assert status(service, ads[0]) == OPEN and status(service, ads[1]) == HIDDEN  # nothing was undone
    refused("report_not_found", service.dismiss, "no-such-report", "anna")


def test_a_review_or_a_hide_while_closed_decides_where_a_reopen_returns(make_service: ServiceFactory) -> None:
    service = make_service(hide_after_reports=1)
    author, reporter = aged(service, 1), aged(service, 2)
    # Hidden by reports, closed by its author, then reviewed: a reopen brings it back open (nothing to review).
    ad = post(service, author)
    report = report_ad(service, reporter, ad)
    assert status(service, ad) == REPORTED
    service.close_ad(author, ad)
    service.dismiss(report, "anna")
    assert service.reopen_ad(author, ad).status == OPEN
    # Closed, then hidden by a moderator: a reopen must not undo the moderator (it returns hidden).
    other = post(service, author)
    second = report_ad(service, reporter, other)  # weighs 1: the ad is reported
    service.close_ad(author, other)
    service.hide_ad(second, "anna")
    assert status(service, other) == CLOSED
    assert service.reopen_ad(author, other).status == HIDDEN


def test_restoring_an_ad_does_not_count_against_honest_reporters(make_service: ServiceFactory) -> None:
    service = make_service(hide_after_reports=2)
    mallory, eve = aged(service, 10), aged(service, 11)
    ad = post(service, service.user(100))
    by_mallory, by_eve = report_ad(service, mallory, ad), report_ad(service, eve, ad)
    assert status(service, ad) == REPORTED
    service.restore_reporter(by_mallory, "anna")
    assert (service.get_report(by_mallory).status, service.get_report(by_eve).status) == ("dismissed", "reviewed")
    # Eve's next report still weighs fully; Mallory's less.
    fresh = post(service, service.user(101))
    assert [service.get_report(report_ad(service, who, fresh)).weight for who in (eve, mallory)] == [100, 50]
