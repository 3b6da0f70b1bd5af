"""Reports that cannot be turned into a weapon, on SQLite and PostgreSQL: limited per person and day, weighed
by who files them (new accounts, reporters whose reports were dismissed count less), and a false reporter
reported by the board itself.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from board.service import BoardService, UserRef
from board.services.reports import FALSE_REPORTS_FLAG, report_weight
from board.views import ModerationOutcome
from database.board_models import BoardReport, ReportTarget
from tests.support.board_moderation import (
    OPEN,
    REPORTED,
    Clock,
    ServiceFactory,
    aged,
    events,
    post,
    refused,
    report_ad,
    report_count,
    status,
)


@pytest.mark.parametrize(
    ("age", "upheld", "dismissed", "weight"),
    [
        (timedelta(hours=1), 0, 0, 25),
        (timedelta(hours=23, minutes=59), 0, 0, 25),
        (timedelta(days=1), 0, 0, 50),
        (timedelta(days=6, hours=23), 0, 0, 50),
        (timedelta(days=7), 0, 0, 100),
        (timedelta(days=365), 0, 0, 100),
        (timedelta(days=30), 0, 1, 50),
        (timedelta(days=30), 0, 2, 33),
        (timedelta(days=30), 0, 3, 25),
        (timedelta(days=30), 0, 9, 10),
        (timedelta(days=30), 1, 1, 67),
        (timedelta(days=30), 3, 1, 80),
        (timedelta(days=30), 5, 0, 100),
        (timedelta(days=3), 0, 1, 25),
        (timedelta(hours=2), 0, 3, 6),
    ],
)
def test_report_weight_by_age_and_track_record(age: timedelta, upheld: int, dismissed: int, weight: int) -> None:
    assert report_weight(age, upheld, dismissed) == weight


def test_three_fresh_accounts_cannot_hide_an_ad_three_established_ones_can(
    make_service: ServiceFactory, clock: Clock
) -> None:
    service = make_service(hide_after_reports=3)
    author = service.user(1)
    fresh = [service.user(10 + i) for i in range(3)]
    first = post(service, author)
    reports = [report_ad(service, reporter, first) for reporter in fresh]
    assert [service.get_report(r).weight for r in reports] == [25, 25, 25]
    assert status(service, first) == OPEN
    assert service.list_ads(None).total == 1

    # Accounts between a day and a week old weigh half: six of them are needed.
    young = [aged(service, 20 + i, days=2) for i in range(6)]
    second = post(service, author)
    for reporter in young[:5]:
        report_ad(service, reporter, second)
    assert status(service, second) == OPEN
    report_ad(service, young[5], second)
    assert status(service, second) == REPORTED

    # The same fresh three, a week later, are established: their three reports hide an ad.
    clock.now += timedelta(days=7)
    third = post(service, author)
    for reporter in fresh[:2]:
        report_ad(service, reporter, third)
    assert status(service, third) == OPEN
    report_ad(service, fresh[2], third)
    assert status(service, third) == REPORTED
    assert events(service, third) == [(OPEN, REPORTED, "board", "reports")]

    # Accounts created 30 days earlier, likewise.
    veterans = [aged(service, 30 + i) for i in range(3)]
    fourth = post(service, service.user(2))
    for reporter in veterans:
        report_ad(service, reporter, fourth)
    assert status(service, fourth) == REPORTED
    assert status(service, first) == OPEN  # the fresh reports of a week ago still weigh what they weighed


def test_a_reporter_whose_reports_were_dismissed_weighs_less(make_service: ServiceFactory) -> None:
    service = make_service(hide_after_reports=5)
    reporter, fair = aged(service, 10), aged(service, 11)
    ads = [post(service, service.user(100 + i)) for i in range(5)]

    first = report_ad(service, reporter, ads[0])
    assert service.get_report(first).weight == 100
    assert service.dismiss(first, "anna").reporter_dismissed == 1
    second = report_ad(service, reporter, ads[1])
    assert service.get_report(second).weight == 50
    service.dismiss(second, "anna")
    third = report_ad(service, reporter, ads[2])
    view = service.get_report(third)
    assert (view.weight, view.reporter_dismissed) == (33, 2)

    # A report that was acted on counts for the reporter: (1 + 1) / (1 + 0 + 1).
    upheld = report_ad(service, fair, ads[3])
    service.hide_ad(upheld, "anna")
    assert service.get_report(report_ad(service, fair, ads[4])).weight == 100


def test_reports_per_person_and_day(make_service: ServiceFactory, clock: Clock) -> None:
    service = make_service(reports_per_day=3, hide_after_reports=10)
    reporter = aged(service, 10)
    ads = [post(service, service.user(100 + i)) for i in range(5)]
    report_ad(service, reporter, ads[0])
    refused("already_reported", report_ad, service, reporter, ads[0])  # one per person and thing, too
    for ad in ads[1:3]:
        report_ad(service, reporter, ad)
    before = report_count(service)
    error = refused("report_limit", report_ad, service, reporter, ads[3])
    assert (error.status, error.values) == (429, {"limit": 3})
    assert report_count(service) == before
    # Another person is not held by this one's limit.
    report_ad(service, aged(service, 11), ads[3])
    clock.now += timedelta(hours=23, minutes=59)
    refused("report_limit", report_ad, service, reporter, ads[3])
    clock.now += timedelta(minutes=2)  # a day after the first three
    report_ad(service, reporter, ads[3])
    report_ad(service, reporter, ads[4])


# ---- the false reporter -----------------------------------------------------------------------------------


def flags_about(service: BoardService, user: UserRef) -> list[str]:
    with service.sessions() as session:
        return list(
            session.scalars(
                select(BoardReport.status)
                .where(BoardReport.target == ReportTarget.REPORTER.value, BoardReport.reported_id == user.id)
                .order_by(BoardReport.id)
            )
        )


def test_the_board_reports_a_reporter_whose_reports_keep_being_dismissed(make_service: ServiceFactory) -> None:
    assert FALSE_REPORTS_FLAG == 3
    service = make_service(hide_after_reports=50, reports_per_day=100)
    reporter = aged(service, 10)
    ads = [post(service, service.user(100 + i)) for i in range(9)]
    filed = [report_ad(service, reporter, ad) for ad in ads]

    service.dismiss(filed[0], "anna")
    service.dismiss(filed[1], "anna")
    assert flags_about(service, reporter) == []
    service.dismiss(filed[2], "anna")
    assert flags_about(service, reporter) == ["open"]
    [flag] = [r for r in service.report_queue(100) if r.target == ReportTarget.REPORTER.value]
    assert (flag.reported, flag.reporter, flag.weight, flag.reporter_dismissed) == (reporter.public_id, "", 0, 3)
    assert flag.ad_id is None
    # What acting on it would reach: the reporter's six open reports (none of which hides anything).
    assert service.reporter_reach(flag.id) == ModerationOutcome(6, 0)

    # At six dismissals the first flag is still open: no second one.
    for report in filed[3:6]:
        service.dismiss(report, "anna")
    assert flags_about(service, reporter) == ["open"]

    # Once it is settled, the next multiple flags them again.
    service.dismiss(flag.id, "anna")
    assert flags_about(service, reporter) == ["dismissed"]
    service.dismiss(filed[6], "anna")
    service.dismiss(filed[7], "anna")
    assert flags_about(service, reporter) == ["dismissed"]
    service.dismiss(filed[8], "anna")
    assert flags_about(service, reporter) == ["dismissed", "open"]

    # Acting on the board's report acts on the one it is about.
    second = next(r.id for r in service.report_queue(100) if r.target == ReportTarget.REPORTER.value)
    assert service.reporter_reach(second) == ModerationOutcome(0, 0)  # nothing of theirs is open any more
    assert service.ban_reporter(second, "anna") == ModerationOutcome(0, 0)
    assert service.user(10).banned
    assert flags_about(service, reporter) == ["dismissed", "actioned"]
