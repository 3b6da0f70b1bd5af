"""The board's limits under concurrency, on SQLite and PostgreSQL: many requests from one person (or at one ad),
released together through the real HTTP API, each on its own thread and connection.

No interleaving may beat a limit: BOARD_ADS_PER_USER (posting and reopening), BOARD_INVITES_PER_DAY, one first
message per person and ad, BOARD_REPORTS_PER_DAY and one report per person and thing. Each refused request
gets its documented answer (never a 500), and the database holds exactly what the answers said: the rows, the
outbox's cards, an ad's report count and weight (no update lost), and its status.
"""

from __future__ import annotations

import random
import string
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from board.service import BoardService, UserRef
from board.services.ad_states import LIVE
from board.services.reports import FULL_WEIGHT
from board.web import create_web_app
from config import BoardLimits
from database.board_models import BoardAd, BoardAdEvent, BoardInvite, BoardReport, BoardUser
from tests.support.webapp_stub import BOT_TOKEN, ServedBoard, board_service, establish, sign_init_data, tg_user

CLIENTS = 48  # threads released together by one barrier, each with its own HTTP connection
# The app runs service calls in its event loop's default executor: on a 2-core machine that is 6 threads.
# More of them put more requests inside the database at once, which is what the limits must withstand.
SERVER_THREADS = 16
AUTHOR = 7_200_000_001
SENDER = 7_200_000_002
REPORTER = 7_200_000_003
AUTHORS = 7_200_100_000  # + i: one ad each
REPORTERS = 7_200_200_000  # + i: many people reporting one ad


@dataclass(frozen=True)
class Call:
    tg_id: int
    method: str
    path: str
    body: dict[str, str] | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def error(self) -> str | None:
        return self.body.get("error")


class Crowd:
    """`size` HTTP clients, each with its own connection (kept from one burst to the next)."""

    def __init__(self, base: str, size: int) -> None:
        self.base = base
        self.sessions = [requests.Session() for _ in range(size)]
        self._headers: dict[int, str] = {}

    def header(self, tg_id: int) -> dict[str, str]:
        if tg_id not in self._headers:
            self._headers[tg_id] = "tma " + sign_init_data(tg_user(tg_id))
        return {"Authorization": self._headers[tg_id]}

    def burst(self, calls: list[Call]) -> list[Answer]:
        """Each call on its own client thread, all released by one barrier once every connection is open; the
        answers in the calls' order."""
        assert len(calls) <= len(self.sessions)
        barrier = threading.Barrier(len(calls))
        answers: list[Answer | None] = [None] * len(calls)
        failures: list[BaseException] = []

        def run(index: int, call: Call) -> None:
            session = self.sessions[index]
            try:
                warm = session.get(self.base + "/api/me", headers=self.header(call.tg_id), timeout=60)
                assert warm.status_code == 200, warm.text  # the connection is open, the caller known
                barrier.wait(timeout=60)
                response = session.request(
                    call.method, self.base + call.path, json=call.body, headers=self.header(call.tg_id), timeout=120
                )
                answers[index] = Answer(response.status_code, response.json())
            except BaseException as error:  # noqa: BLE001 - reported below, in the test's thread
                barrier.abort()
                failures.append(error)

        threads = [threading.Thread(target=run, args=(i, call), name=f"client-{i}") for i, call in enumerate(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not failures, failures
        assert all(answer is not None for answer in answers)
        return [answer for answer in answers if answer is not None]

    def close(self) -> None:
        for session in self.sessions:
            session.close()


@dataclass
class Board:
    service: BoardService
    engine: Engine
    served: ServedBoard
    crowd: Crowd
    texts: random.Random = field(default_factory=lambda: random.Random(20261201))

    def count(self, model: type, *where: Any) -> int:
        with self.service.sessions() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    def text(self, words: int = 8) -> str:
        """A text unlike any other (so the spam filter's "flood of similar texts" never refuses it)."""
        return " ".join(
            "".join(self.texts.choice(string.ascii_lowercase) for _ in range(self.texts.randint(4, 9)))
            for _ in range(words)
        ).capitalize()

    def ad_of(self, author: UserRef) -> str:
        return self.service.create_ad(author, self.text(3), self.text(), "other").id

    def ads_by_strangers(self, count: int) -> list[str]:
        """`count` open ads, one each by a different author."""
        return [self.ad_of(self.service.user(AUTHORS + i)) for i in range(count)]


BoardFactory = Callable[..., Board]


@pytest.fixture
def make_board(database_url: str) -> Iterator[BoardFactory]:
    started: list[Board] = []

    def make(limits: BoardLimits | None = None) -> Board:
        engine, service = board_service(database_url, limits)
        served = ServedBoard(lambda: create_web_app(service, BOT_TOKEN, requests_per_minute=10_000))
        served.loop.set_default_executor(ThreadPoolExecutor(SERVER_THREADS, thread_name_prefix="board-api"))
        board = Board(service, engine, served.start(), Crowd(served.url, CLIENTS))
        started.append(board)
        return board

    yield make
    for board in started:
        board.crowd.close()
        board.served.stop()
        board.engine.dispose()


def tally(answers: list[Answer]) -> Counter[tuple[int, str | None]]:
    """(status, error code) → how many; never a server error, and every refusal in the documented shape."""
    for answer in answers:
        assert answer.status < 500, answer
        if answer.status >= 400:
            assert set(answer.body) in ({"error", "message"}, {"error", "message", "field"}), answer
            assert answer.body["message"] and not answer.body["message"].startswith("error."), answer
    return Counter((answer.status, answer.error) for answer in answers)


def invite_cards(service: BoardService) -> list[tuple[int, str]]:
    """(recipient, invitation id) of every invitation card waiting in the outbox."""
    return [(item.recipient_id, item.payload["invite"]) for item in service.pending_outbox() if item.kind == "invite"]


# ---- ads --------------------------------------------------------------------------------------------------


def test_parallel_posts_create_exactly_the_ad_limit(make_board: BoardFactory) -> None:
    """From someone the board has never seen: their first requests, all at once, make one user."""
    board = make_board()
    limit = board.service.limits.ads_per_user
    calls = [
        Call(AUTHOR, "POST", "/api/ads", {"title": board.text(3), "text": board.text(), "category": "other"})
        for _ in range(CLIENTS)
    ]
    answers = board.crowd.burst(calls)

    assert tally(answers) == {(201, None): limit, (429, "ad_limit"): CLIENTS - limit}
    assert board.count(BoardUser) == 1
    author = board.service.user(AUTHOR)
    created = {answer.body["id"] for answer in answers if answer.status == 201}
    with board.service.sessions() as session:
        stored = set(session.scalars(select(BoardAd.public_id).where(BoardAd.author_id == author.id)))
    assert stored == created and len(stored) == limit
    assert {ad.id for ad in board.service.my_ads(author)} == created


def test_parallel_reopens_and_posts_fill_the_last_place_once(make_board: BoardFactory) -> None:
    board = make_board()
    author = board.service.user(AUTHOR)
    limit = board.service.limits.ads_per_user
    first, second, kept = (board.ad_of(author) for _ in range(limit))
    board.service.close_ad(author, first)
    board.service.close_ad(author, second)
    board.ad_of(author)  # live: `kept` and this one — one place left under the limit
    assert board.count(BoardAd, BoardAd.author_id == author.id, BoardAd.status.in_(LIVE)) == limit - 1
    third = CLIENTS // 3
    calls = [Call(AUTHOR, "POST", f"/api/ads/{first}/reopen") for _ in range(third)]
    calls += [Call(AUTHOR, "POST", f"/api/ads/{second}/reopen") for _ in range(third)]
    calls += [
        Call(AUTHOR, "POST", "/api/ads", {"title": board.text(3), "text": board.text(), "category": "other"})
        for _ in range(CLIENTS - 2 * third)
    ]
    answers = board.crowd.burst(calls)

    outcomes = tally(answers)
    won = [answer for answer in answers if answer.status in (200, 201)]
    assert len(won) == 1, outcomes
    assert set(outcomes) - {(200, None), (201, None)} <= {(429, "ad_limit"), (409, "reopen_expired")}, outcomes
    assert board.count(BoardAd, BoardAd.author_id == author.id, BoardAd.status.in_(LIVE)) == limit
    live = {ad.id for ad in board.service.my_ads(author) if ad.status in LIVE}
    assert won[0].body["id"] in live and kept in live and len(live) == limit
    # Each ad that came back was reopened once: one closed → open event, by its author.
    with board.service.sessions() as session:
        reopened = session.scalars(
            select(BoardAd.public_id)
            .join(BoardAdEvent, BoardAdEvent.ad_id == BoardAd.id)
            .where(BoardAdEvent.from_status == "closed", BoardAdEvent.to_status == "open")
        ).all()
    assert reopened == ([won[0].body["id"]] if won[0].status == 200 else [])


# ---- first messages ---------------------------------------------------------------------------------------


def test_parallel_first_messages_to_many_ads_stop_at_the_daily_limit(make_board: BoardFactory) -> None:
    board = make_board()
    sender = board.service.user(SENDER)
    limit = board.service.limits.invites_per_day
    ads = board.ads_by_strangers(30)
    answers = board.crowd.burst(
        [Call(SENDER, "POST", f"/api/ads/{ad}/invite", {"message": board.text()}) for ad in ads]
    )

    assert tally(answers) == {(201, None): limit, (429, "invite_limit"): len(ads) - limit}
    sent = {answer.body["invite_id"] for answer in answers if answer.status == 201}
    with board.service.sessions() as session:
        stored = dict(
            session.execute(
                select(BoardInvite.public_id, BoardAd.author_id)
                .join(BoardAd, BoardAd.id == BoardInvite.ad_id)
                .where(BoardInvite.sender_id == sender.id)
            ).all()
        )
    assert set(stored) == sent and len(sent) == limit
    # One card for each stored invitation, to its ad's author; none for a refused one.
    assert sorted(invite_cards(board.service)) == sorted((author, invite) for invite, author in stored.items())


def test_parallel_first_messages_to_one_ad_store_one(make_board: BoardFactory) -> None:
    board = make_board()
    sender = board.service.user(SENDER)
    author = board.service.user(AUTHOR)
    ad = board.ad_of(author)
    message = {"message": "Hello! Is it still available?"}  # the same message, sent over and over
    answers = board.crowd.burst([Call(SENDER, "POST", f"/api/ads/{ad}/invite", message) for _ in range(CLIENTS)])

    assert tally(answers) == {(201, None): 1, (409, "already_invited"): CLIENTS - 1}
    [sent] = [answer.body["invite_id"] for answer in answers if answer.status == 201]
    with board.service.sessions() as session:
        assert session.scalars(select(BoardInvite.public_id).where(BoardInvite.sender_id == sender.id)).all() == [sent]
    assert invite_cards(board.service) == [(author.id, sent)]
    assert board.service.get_ad(sender, ad).invited is True


# ---- reports ----------------------------------------------------------------------------------------------


def test_parallel_reports_from_one_person_stop_at_the_daily_limit(make_board: BoardFactory) -> None:
    limit = 4
    board = make_board(BoardLimits(reports_per_day=limit, hide_after_reports=1))
    establish(board.service, REPORTER)
    reporter = board.service.user(REPORTER)
    ads = board.ads_by_strangers(24)
    calls = [Call(REPORTER, "POST", f"/api/ads/{ad}/report", {"reason": f"fake {i}"}) for i, ad in enumerate(ads)]
    answers = board.crowd.burst(calls)

    assert tally(answers) == {(201, None): limit, (429, "report_limit"): len(ads) - limit}
    filed = {answer.body["report_id"] for answer in answers if answer.status == 201}
    reported = {ad for ad, answer in zip(ads, answers, strict=True) if answer.status == 201}
    with board.service.sessions() as session:
        assert (
            set(session.scalars(select(BoardReport.public_id).where(BoardReport.reporter_id == reporter.id))) == filed
        )
        weights = {
            ad.public_id: (ad.report_count, ad.report_weight, ad.status) for ad in session.scalars(select(BoardAd))
        }
    # Each report counted once on its own ad (one full-weight report hides an ad here); the others untouched.
    assert weights == {ad: (1, FULL_WEIGHT, "reported") if ad in reported else (0, 0, "open") for ad in ads}


def test_parallel_identical_reports_store_one(make_board: BoardFactory) -> None:
    board = make_board(BoardLimits(hide_after_reports=2))
    establish(board.service, REPORTER)
    reporter = board.service.user(REPORTER)
    ad = board.ad_of(board.service.user(AUTHOR))
    answers = board.crowd.burst([Call(REPORTER, "POST", f"/api/ads/{ad}/report", {"reason": "spam"})] * CLIENTS)

    assert tally(answers) == {(201, None): 1, (409, "already_reported"): CLIENTS - 1}
    assert board.count(BoardReport, BoardReport.reporter_id == reporter.id) == 1
    with board.service.sessions() as session:
        stored = session.scalar(select(BoardAd).where(BoardAd.public_id == ad))
        assert stored is not None
        assert (stored.report_count, stored.report_weight, stored.status) == (1, FULL_WEIGHT, "open")


def test_many_reporters_at_once_lose_no_weight(make_board: BoardFactory) -> None:
    """Different people reporting one ad together: every report counts in full, and the ad hides once (and
    only once) their weight reaches BOARD_HIDE_AFTER_REPORTS full reports."""
    threshold = 13
    board = make_board(BoardLimits(hide_after_reports=threshold))
    ad = board.ad_of(board.service.user(AUTHOR))
    young = [REPORTERS + i for i in range(8)]  # accounts under a day old: a quarter of a report each
    settled = [REPORTERS + 100 + i for i in range(8)]
    later = [REPORTERS + 200 + i for i in range(CLIENTS - 16)]
    for tg_id in young:
        board.service.user(tg_id)
    for tg_id in settled + later:
        establish(board.service, tg_id)

    def state() -> tuple[int, int, str, int]:
        with board.service.sessions() as session:
            row = session.scalar(select(BoardAd).where(BoardAd.public_id == ad))
            assert row is not None
            weights = session.scalar(select(func.coalesce(func.sum(BoardReport.weight), 0)).where(
                BoardReport.ad_id == row.id))  # fmt: skip
            stored = session.scalar(select(func.count()).select_from(BoardReport).where(BoardReport.ad_id == row.id))
            assert row.report_weight == weights  # the ad's running sum is the sum of its reports
            return row.report_count, row.report_weight, row.status, stored or 0

    # Below the threshold: every report lands, the ad stays up.
    round_one = board.crowd.burst(
        [Call(tg_id, "POST", f"/api/ads/{ad}/report", {"reason": "scam"}) for tg_id in young + settled]
    )
    assert tally(round_one) == {(201, None): 16}
    below = len(young) * 25 + len(settled) * FULL_WEIGHT
    assert below < threshold * FULL_WEIGHT
    assert state() == (16, below, "open", 16)

    # Crossing it: the reports that land before the ad hides count; later ones find it gone, as anyone would.
    round_two = board.crowd.burst([Call(tg_id, "POST", f"/api/ads/{ad}/report", {"reason": "scam"}) for tg_id in later])
    outcomes = tally(round_two)
    landed = outcomes[(201, None)]
    assert set(outcomes) <= {(201, None), (404, "ad_not_found")}, outcomes
    assert landed >= -(-(threshold * FULL_WEIGHT - below) // FULL_WEIGHT)  # enough to reach the threshold
    assert state() == (16 + landed, below + landed * FULL_WEIGHT, "reported", 16 + landed)
    with board.service.sessions() as session:
        events = session.execute(
            select(BoardAdEvent.from_status, BoardAdEvent.to_status, BoardAdEvent.actor)
            .join(BoardAd, BoardAd.id == BoardAdEvent.ad_id)
            .where(BoardAd.public_id == ad)
        ).all()
    assert [tuple(event) for event in events] == [("open", "reported", "board")]
