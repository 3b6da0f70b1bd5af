"""An ad's state machine, on SQLite and PostgreSQL: its status changes only by the transitions
`board.services.ad_states` allows, made once however requests race, each by the one kind of actor allowed and
recorded with who and why; a moderator alone hides and unhides; an author reopens within the window, back to
where the ad was; an expired ad is done. (`test_board_moderation.py`: the moderator's actions on reports.)
"""

from __future__ import annotations

import itertools
from datetime import timedelta

from sqlalchemy import select, update

from board.services.ad_states import REOPEN_WINDOW, TRANSITIONS, Actor
from database.board_models import AdStatus, BoardAd, BoardAdEvent, ReportTarget
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
    force,
    post,
    refused,
    report_ad,
    status,
)

# The transitions `ad_states` documents, and who alone may make each.
DOCUMENTED = {
    (OPEN, REPORTED): Actor.BOARD,
    (OPEN, EXPIRED): Actor.BOARD,
    (REPORTED, OPEN): Actor.MODERATOR,
    (OPEN, HIDDEN): Actor.MODERATOR,
    (REPORTED, HIDDEN): Actor.MODERATOR,
    (HIDDEN, OPEN): Actor.MODERATOR,
    (OPEN, CLOSED): Actor.AUTHOR,
    (REPORTED, CLOSED): Actor.AUTHOR,
    (HIDDEN, CLOSED): Actor.AUTHOR,
    (CLOSED, OPEN): Actor.AUTHOR,
    (CLOSED, REPORTED): Actor.AUTHOR,
    (CLOSED, HIDDEN): Actor.AUTHOR,
}


def test_every_transition_is_allowed_or_refused_as_documented(make_service: ServiceFactory) -> None:
    assert {(old.value, new.value): who for (old, new), who in TRANSITIONS.items()} == DOCUMENTED
    service = make_service()
    ad_id = post(service, service.user(1))
    statuses = [s.value for s in AdStatus]
    for old, new, actor in itertools.product(statuses, statuses, list(Actor)):
        with service.sessions.begin() as session:
            session.execute(update(BoardAd).where(BoardAd.public_id == ad_id).values(status=old))
        before = len(events(service, ad_id))
        moved = force(service, ad_id, AdStatus(new), actor, who=actor.value)
        allowed = DOCUMENTED.get((old, new)) is actor
        assert moved is allowed, (old, new, actor)
        assert status(service, ad_id) == (new if allowed else old), (old, new, actor)
        history = events(service, ad_id)
        if allowed:
            assert history[before:] == [(old, new, actor.value, "raced")]
        else:
            assert len(history) == before, (old, new, actor)
    # A closed or expired ad never moves by the board or a moderator; an expired one by nobody.
    assert not any(old == EXPIRED for old, _new in DOCUMENTED)
    assert all(who is Actor.AUTHOR for (old, _new), who in DOCUMENTED.items() if old == CLOSED)


def test_a_transition_is_made_once_however_requests_race(make_service: ServiceFactory) -> None:
    service = make_service()
    ad_id = post(service, service.user(1))
    assert force(service, ad_id, AdStatus.HIDDEN, Actor.MODERATOR)
    assert not force(service, ad_id, AdStatus.HIDDEN, Actor.MODERATOR)  # hidden already: nothing to do
    assert [e[:2] for e in events(service, ad_id)] == [(OPEN, HIDDEN)]


def test_dismissing_a_report_never_reopens_what_a_moderator_hid_or_its_author_closed(
    make_service: ServiceFactory,
) -> None:
    service = make_service(hide_after_reports=2)
    author = service.user(1)
    reporters = [aged(service, 10 + i) for i in range(3)]

    # Hidden by reports, then closed by its author: a dismissal leaves it closed.
    closed = post(service, author)
    on_closed = [report_ad(service, r, closed) for r in reporters[:2]]
    assert status(service, closed) == REPORTED
    service.close_ad(author, closed)
    service.dismiss(on_closed[0], "anna")
    assert status(service, closed) == CLOSED

    # Hidden by a moderator while a report was on its way: dismissing that report leaves it hidden.
    hidden = post(service, author)
    late = report_ad(service, reporters[0], hidden)
    assert force(service, hidden, AdStatus.HIDDEN, Actor.MODERATOR, "boris")
    service.dismiss(late, "anna")
    assert status(service, hidden) == HIDDEN

    # Hidden by reports and then by a moderator: likewise.
    both = post(service, author)
    on_both = [report_ad(service, r, both) for r in reporters[:2]]
    assert force(service, both, AdStatus.HIDDEN, Actor.MODERATOR, "boris")
    service.dismiss(on_both[0], "anna")
    service.dismiss(on_both[1], "anna")
    assert status(service, both) == HIDDEN
    for ad in (closed, hidden, both):
        assert (HIDDEN, OPEN) not in [e[:2] for e in events(service, ad)]
        assert (CLOSED, OPEN) not in [e[:2] for e in events(service, ad)]

    # While one ad hidden by reports is reviewed, it comes back once the rest no longer weigh enough.
    reviewed = post(service, service.user(2))
    young = report_ad(service, aged(service, 20, days=2), reviewed)  # weighs half
    on_reviewed = [report_ad(service, aged(service, 21 + i), reviewed) for i in range(2)]
    assert status(service, reviewed) == REPORTED
    service.dismiss(young, "anna")
    assert status(service, reviewed) == REPORTED  # two full reports still stand
    service.dismiss(on_reviewed[0], "anna")
    assert status(service, reviewed) == OPEN
    assert events(service, reviewed) == [(OPEN, REPORTED, "board", "reports"), (REPORTED, OPEN, "anna", "reviewed")]


def test_hide_and_unhide_are_a_moderators_alone(make_service: ServiceFactory) -> None:
    service = make_service(hide_after_reports=2)
    author = service.user(1)
    reporters = [aged(service, 10 + i) for i in range(3)]

    ad = post(service, author)
    first = report_ad(service, reporters[0], ad, "fake goods")
    second = report_ad(service, reporters[1], ad)
    assert status(service, ad) == REPORTED
    view = service.hide_ad(first, "anna")
    assert (view.status, view.ad_status, view.resolved_by) == ("actioned", HIDDEN, "anna")
    assert service.get_report(second).status == "actioned"  # every open report on it is settled
    assert events(service, ad)[-1] == (REPORTED, HIDDEN, "anna", "fake goods")
    refused("ad_not_found", service.get_ad, reporters[2], ad)
    assert service.get_ad(author, ad).status == HIDDEN  # its author still sees it
    assert service.hidden_count() == 1 and [h[0] for h in service.hidden_ads()] == [ad]

    # Only hidden ads are unhidden.
    assert service.unhide_ad(ad, "boris") == service.get_ad(author, ad).title
    assert status(service, ad) == OPEN
    assert events(service, ad)[-1] == (HIDDEN, OPEN, "boris", "unhidden")
    refused("ad_not_hidden", service.unhide_ad, ad, "boris")
    reported = post(service, author)
    for reporter in reporters[:2]:
        report_ad(service, reporter, reported)
    assert status(service, reported) == REPORTED
    refused("ad_not_hidden", service.unhide_ad, reported, "boris")
    closed = post(service, author)
    service.close_ad(author, closed)
    refused("ad_not_hidden", service.unhide_ad, closed, "boris")
    refused("ad_not_found", service.unhide_ad, "no-such-ad", "boris")
    refused("ad_not_found", service.unhide_ad, "x" * 300, "boris")

    # An open ad is hidden from one report; a closed one stays closed.
    other_author = service.user(2)
    fresh = post(service, other_author)
    service.hide_ad(report_ad(service, reporters[2], fresh), "anna")
    assert events(service, fresh) == [(OPEN, HIDDEN, "anna", "spam")]
    shut = post(service, service.user(3))
    on_shut = report_ad(service, reporters[0], shut)
    service.close_ad(service.user(3), shut)
    service.hide_ad(on_shut, "anna")
    assert status(service, shut) == CLOSED

    # The author of a hidden ad may close it, and reopen it back to hidden, never to open.
    service.close_ad(other_author, fresh)
    assert status(service, fresh) == CLOSED
    assert service.reopen_ad(other_author, fresh).status == HIDDEN
    assert events(service, fresh)[-2:] == [(HIDDEN, CLOSED, "author", ""), (CLOSED, HIDDEN, "author", "reopened")]

    # A banned author's ads are hidden, and stay so.
    banned_ad = post(service, service.user(4))
    service.ban(report_ad(service, reporters[1], banned_ad), "anna")
    assert status(service, banned_ad) == HIDDEN
    assert events(service, banned_ad)[-1] == (OPEN, HIDDEN, "anna", "author banned")
    refused("author_banned", service.unhide_ad, banned_ad, "boris")
    assert status(service, banned_ad) == HIDDEN

    # A report about a chat or an invitation has no ad to hide.
    guest = service.user(5)
    chat_ad = post(service, service.user(6))
    sent = service.send_invite(guest, chat_ad, "Hello, is it still there?")
    decision = service.decide_invite(service.user(6), sent.invite_id, True)
    assert decision.chat_id
    on_chat = service.report(guest, ReportTarget.CHAT, decision.chat_id, "rude")
    refused("no_ad", service.hide_ad, on_chat, "anna")
    assert status(service, chat_ad) == OPEN


def test_the_author_reopens_within_the_window_back_to_where_it_was(make_service: ServiceFactory, clock: Clock) -> None:
    service = make_service(hide_after_reports=1, ads_per_user=2)
    author, stranger = service.user(1), service.user(2)
    reporter = aged(service, 10)

    ad = post(service, author)
    refused("reopen_expired", service.reopen_ad, author, ad)  # open: nothing to undo
    closed = service.close_ad(author, ad)
    assert closed.status == CLOSED and closed.reopen_until == clock.now + REOPEN_WINDOW
    refused("not_your_ad", service.reopen_ad, stranger, ad)
    clock.now += REOPEN_WINDOW - timedelta(seconds=1)
    assert service.reopen_ad(author, ad).status == OPEN
    assert events(service, ad) == [(OPEN, CLOSED, "author", ""), (CLOSED, OPEN, "author", "reopened")]

    # Later than the window: refused, and it stays closed.
    service.close_ad(author, ad)
    clock.now += REOPEN_WINDOW + timedelta(seconds=1)
    error = refused("reopen_expired", service.reopen_ad, author, ad)
    assert (error.status, error.values) == (409, {"minutes": 10})
    assert status(service, ad) == CLOSED
    service.close_ad(author, ad)  # closing a closed ad changes nothing
    assert len(events(service, ad)) == 3

    # Hidden by reports, closed, reopened: hidden by reports again (a close does not launder reports).
    reported = post(service, author)
    report_ad(service, reporter, reported)
    assert status(service, reported) == REPORTED
    service.close_ad(author, reported)
    assert service.reopen_ad(author, reported).status == REPORTED
    refused("ad_not_found", service.get_ad, stranger, reported)

    # A reopen counts against the author's open ads.
    spare = post(service, author)
    service.close_ad(author, spare)
    post(service, author)  # two live ads now: `reported` and this one
    refused("ad_limit", service.reopen_ad, author, spare)
    assert status(service, spare) == CLOSED


def test_expired_is_done(make_service: ServiceFactory, clock: Clock) -> None:
    service = make_service(ad_days=1)
    author = service.user(1)
    ad = post(service, author)
    late = post(service, author)
    clock.now += timedelta(days=1) - timedelta(minutes=5)
    service.close_ad(author, late)  # closed five minutes before it would have expired
    clock.now += timedelta(minutes=6)  # within the reopen window, but past the ad's time
    assert service.expire_ads() == 1
    assert events(service, ad) == [(OPEN, EXPIRED, "board", "time")]
    assert service.close_ad(author, ad).status == EXPIRED  # closing an expired ad changes nothing
    assert events(service, ad) == [(OPEN, EXPIRED, "board", "time")]
    refused("reopen_expired", service.reopen_ad, author, ad)
    refused("reopen_expired", service.reopen_ad, author, late)
    assert status(service, late) == CLOSED


def test_every_change_is_recorded_with_who_and_why(make_service: ServiceFactory, clock: Clock) -> None:
    service = make_service(hide_after_reports=1)
    author = service.user(1)
    reporters = [aged(service, 10 + i) for i in range(3)]
    ad = post(service, author)
    start = clock.now
    clock.now += timedelta(minutes=1)
    first = report_ad(service, reporters[0], ad, "looks fake")
    clock.now += timedelta(minutes=1)
    service.dismiss(first, "anna")
    clock.now += timedelta(minutes=1)
    second = report_ad(service, reporters[1], ad, "stolen goods")
    clock.now += timedelta(minutes=1)
    service.hide_ad(second, "boris")
    clock.now += timedelta(minutes=1)
    service.unhide_ad(ad, "carla")
    clock.now += timedelta(minutes=1)
    service.close_ad(author, ad)
    clock.now += timedelta(minutes=1)
    service.reopen_ad(author, ad)
    clock.now += timedelta(days=31)
    service.expire_ads()
    assert events(service, ad) == [
        (OPEN, REPORTED, "board", "reports"),
        (REPORTED, OPEN, "anna", "reviewed"),
        (OPEN, REPORTED, "board", "reports"),
        (REPORTED, HIDDEN, "boris", "stolen goods"),
        (HIDDEN, OPEN, "carla", "unhidden"),
        (OPEN, CLOSED, "author", ""),
        (CLOSED, OPEN, "author", "reopened"),
        (OPEN, EXPIRED, "board", "time"),
    ]
    with service.sessions() as session:
        times = list(session.scalars(select(BoardAdEvent.created_at).order_by(BoardAdEvent.id)))
    assert [t - start for t in times] == [timedelta(minutes=m) for m in range(1, 8)] + [timedelta(minutes=7, days=31)]
    assert status(service, ad) == EXPIRED
