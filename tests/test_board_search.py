"""Search by the database's own full-text index (SQLite FTS5, PostgreSQL full text) on text folded for case and
ё, on both databases; and the API's refusals of odd queries and URLs (repeated or unknown parameters, a 10,000
character URL, a huge request line) without a traceback in the log."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, text

from board.errors import BoardError
from board.service import BoardService
from board.services.ads import search_condition
from board.web import create_web_app
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardAd, ReportTarget
from database.engine import open_database
from tests.support.board_moderation import Clock
from tests.support.stack import TEST_SECRET_KEY
from tests.support.webapp_stub import BOT_TOKEN, ServedBoard, board_service, establish, sign_init_data, tg_user

BOARD = Path(__file__).resolve().parent.parent / "board"
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.fixture
def service(database_url: str) -> Iterator[BoardService]:
    engine, sessions = open_database(database_url)
    limits = BoardLimits(stop_words=("casino",), ads_per_user=50, hide_after_reports=1)
    yield BoardService(sessions, SecretBox(TEST_SECRET_KEY), limits, clock=Clock())
    engine.dispose()


def refused(code: str, action: Any, *args: object) -> BoardError:
    with pytest.raises(BoardError) as raised:
        action(*args)
    assert raised.value.code == code, raised.value.code
    return raised.value


# ---- search (SQLite FTS5, PostgreSQL full text) --------------------------------------------------------------


class Listing:
    def __init__(self, service: BoardService) -> None:
        self.service = service
        self.viewer = service.user(99)
        authors = [service.user(10 + i) for i in range(6)]
        make = service.create_ad
        self.kitten = make(authors[0], "Продаю котёнка", "Рыжий, два месяца, к лотку приучен.", "sale").id
        self.cat = make(authors[1], "Котенок ищет дом", "Серый, ласковый, отдам даром.", "other").id
        self.bike = make(authors[2], "Велосипед STELS", "Горный, почти новый, 21 скорость.", "sale").id
        self.tree = make(authors[3], "Ёлка искусственная", "Высота 180 см, с гирляндой.", "other").id
        self.spruce = make(authors[4], "Елка живая", "Срубим к празднику, доставка.", "services").id

    def found(self, q: str, category: str | None = None) -> set[str]:
        page = self.service.list_ads(self.viewer, q=q, category=category)
        assert page.total == len(page.ads)
        return {ad.id for ad in page.ads}


def test_search_folds_case_and_yo(service: BoardService) -> None:
    board = Listing(service)
    assert board.found("котенка") == {board.kitten}  # 'котёнка' found by 'котенка'
    assert board.found("котёнка") == {board.kitten}
    assert board.found("КОТЁНКА") == {board.kitten}
    assert board.found("Котенок") == {board.cat}
    assert board.found("котЕн") == {board.kitten, board.cat}  # words are prefixes
    assert board.found("елка") == board.found("ёлка") == board.found("ЁЛКА") == {board.tree, board.spruce}
    assert board.found("stels") == board.found("Stels") == board.found("STELS") == {board.bike}


def test_search_words_all_match_as_prefixes_in_title_or_text(service: BoardService) -> None:
    board = Listing(service)
    assert board.found("горный") == {board.bike}  # a word of the text, not the title
    assert board.found("котен рыж") == {board.kitten}  # every word must match
    assert board.found("рыж котен") == {board.kitten}
    assert board.found("котен зебра") == set()
    assert board.found("180 гирл") == {board.tree}
    nothing = service.list_ads(board.viewer, q="зебра")
    assert (nothing.total, nothing.ads, nothing.pages) == (0, [], 1)
    assert board.found("котен", "sale") == {board.kitten}
    assert board.found("котен", "other") == {board.cat}
    assert board.found("котен", "jobs") == set()
    assert board.found("елка", "services") == {board.spruce}
    # Whatever a query holds, it is words to look for: no query syntax reaches the database.
    for q in ('"кот', "кот*", "кот:*", "AND OR NOT", "NEAR(кот", "-кот", "a & b | !c", "'; DROP", "()", "^кот"):
        service.list_ads(board.viewer, q=q)
    assert board.found("!!! ...") == board.found("") == {board.kitten, board.cat, board.bike, board.tree,
                                                          board.spruce}  # fmt: skip


def test_search_never_finds_closed_or_hidden_ads(service: BoardService) -> None:
    board = Listing(service)
    service.close_ad(service.user(10), board.kitten)
    reporter = service.user(50)
    establish(service, 50)
    report = service.report(reporter, ReportTarget.AD, board.cat, "spam")  # hides it (one report is enough here)
    assert service.get_ad(service.user(11), board.cat).status == "reported"
    assert board.found("котен") == set()
    service.hide_ad(report, "anna")
    assert board.found("котен") == set()
    service.close_ad(service.user(12), board.bike)
    assert board.found("горный") == set()
    assert board.found("елка") == {board.tree, board.spruce}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_search_uses_the_fts5_table_kept_in_step(service: BoardService) -> None:
    board = Listing(service)

    def indexed() -> int:  # documents in the full-text index (not the content table it reads through)
        with service.sessions() as session:
            return session.scalar(text("SELECT count(*) FROM board_ads_fts_docsize")) or 0

    def matching(word: str) -> set[int]:
        with service.sessions() as session:
            rows = session.scalars(text("SELECT rowid FROM board_ads_fts WHERE board_ads_fts MATCH :q"), {"q": word})
            return set(rows)

    def integrity() -> None:
        with service.sessions.begin() as session:
            session.execute(text("INSERT INTO board_ads_fts(board_ads_fts) VALUES ('integrity-check')"))

    with service.sessions() as session:
        ids = dict(session.execute(select(BoardAd.public_id, BoardAd.id)).all())
    assert indexed() == 5
    assert matching("котенка") == {ids[board.kitten]}
    integrity()

    # The listing reads the index: an ad missing from it is not found, though its text says the word.
    with service.sessions.begin() as session:
        session.execute(
            text(
                "INSERT INTO board_ads_fts(board_ads_fts, rowid, search_text) "
                "SELECT 'delete', id, search_text FROM board_ads WHERE id = :id"
            ),
            {"id": ids[board.bike]},
        )
    assert indexed() == 4
    assert board.found("горный") == set()
    assert board.bike in board.found("")
    with service.sessions.begin() as session:
        session.execute(text("INSERT INTO board_ads_fts(board_ads_fts) VALUES ('rebuild')"))
    assert board.found("горный") == {board.bike}

    # Updates and deletes keep it in step (the triggers).
    with service.sessions.begin() as session:
        session.execute(
            text("UPDATE board_ads SET search_text = 'самокат электрический' WHERE id = :id"), {"id": ids[board.bike]}
        )
    assert board.found("самокат") == {board.bike}
    assert board.found("горный") == set()
    with service.sessions.begin() as session:
        session.execute(text("DELETE FROM board_ads WHERE id = :id"), {"id": ids[board.tree]})
    assert indexed() == 4
    assert matching("гирлянд*") == set()
    assert board.found("елка") == {board.spruce}
    service.create_ad(service.user(20), "Санки детские", "Деревянные, с ремнём.", "sale")
    assert indexed() == 5
    integrity()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_search_is_the_indexed_full_text_expression(service: BoardService) -> None:
    Listing(service)
    with service.sessions() as session:
        condition = search_condition(session, "котенка рыж")
        assert condition is not None
        session.execute(text("SET LOCAL enable_seqscan = off"))
        statement = (
            select(BoardAd.id).where(condition).compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        )
        plan = "\n".join(session.scalars(text(f"EXPLAIN {statement}")))
        assert "ix_board_ads_search_tsv" in plan, plan
        assert session.scalar(select(func.count()).select_from(BoardAd).where(condition)) == 1


# ---- the HTTP API: odd queries and URLs ----------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The board served on 127.0.0.1; (its URL, an ad's id)."""
    engine, board = board_service(f"sqlite:///{tmp_path / 'board.db'}")
    ad = board.create_ad(board.user(7_200_000_001), "Kettle", "An electric kettle.", "sale").id
    with ServedBoard(lambda: create_web_app(board, BOT_TOKEN)) as server:
        yield server.url, ad
    engine.dispose()


def caller() -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = "tma " + sign_init_data(tg_user(7_200_000_002))
    return session


def bad_request(response: requests.Response, status: int = 400) -> None:
    assert response.status_code == status, (response.status_code, response.text[:200])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "bad_request" and body["message"], body


def test_repeated_query_parameters_are_refused(served: tuple[str, str]) -> None:
    url, _ad = served
    api = caller()
    for query in ("page=1&page=2", "q=a&q=b", "q=a&q=a", "category=sale&category=jobs", "q=&q=", "page=0&q=x&page=0"):
        bad_request(api.get(f"{url}/api/ads?{query}", timeout=30))
    for query in ("page=1", "q=a", "q=a&category=sale&page=0", ""):
        assert api.get(f"{url}/api/ads?{query}", timeout=30).status_code == 200, query


def test_unknown_query_parameters_are_refused_on_every_endpoint(served: tuple[str, str]) -> None:
    url, ad = served
    api = caller()
    gets = ["/api/openapi.json", "/api/me", "/api/categories", "/api/ads", f"/api/ads/{ad}", "/api/me/ads"]
    for path in gets:
        assert api.get(url + path, timeout=30).status_code == 200, path
        for query in ("x=1", "Page=1", "page=1&x=", "x=1&x=2"):
            bad_request(api.get(f"{url}{path}?{query}", timeout=30))
    writes = [
        ("POST", "/api/ads", {"title": "Lamp", "text": "A desk lamp.", "category": "sale"}),
        ("POST", f"/api/ads/{ad}/invite", {"message": "Is it still there?"}),
        ("POST", f"/api/ads/{ad}/report", {"reason": "odd"}),
        ("POST", f"/api/ads/{ad}/reopen", None),
        ("DELETE", f"/api/ads/{ad}", None),
    ]
    for method, path, body in writes:
        bad_request(api.request(method, f"{url}{path}?dry_run=1", json=body, timeout=30))
    assert api.get(f"{url}/api/ads/{ad}", timeout=30).json()["invited"] is False  # none of them did anything
    assert api.get(f"{url}/api/me/ads", timeout=30).json() == {"ads": []}


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The server logged no traceback, nor the request itself (the client's own debug lines aside)."""
    server = [r for r in caplog.records if r.name.startswith(("aiohttp", "board", "asyncio"))]
    for record in server:
        assert record.exc_info is None and not record.exc_text, (record.name, record.getMessage())
        assert "Traceback" not in record.getMessage()
        assert "a" * 200 not in record.getMessage()


def test_a_long_url_is_a_bad_request_without_a_traceback(
    served: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, ad = served
    api = caller()
    bad_request(api.get(f"{url}/api/ads?q=" + "a" * 10_000, timeout=30))
    bad_request(api.get(f"{url}/api/ads/" + "a" * 10_000, timeout=30))
    bad_request(requests.get(f"{url}/api/ads?q=" + "a" * 10_000, timeout=30))  # refused before sign-in is checked
    bad_request(api.get(f"{url}/api/ads?q=" + "%20" * 3_400, timeout=30))  # counted as it is sent
    assert api.get(f"{url}/api/ads?q=" + "a" * 101, timeout=30).json()["error"] == "query_too_long"
    assert api.get(f"{url}/api/ads/{ad}", timeout=30).status_code == 200
    no_traceback(caplog)


def raw_request(url: str, request_line: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        try:
            connection.sendall(request_line + b"\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before it read everything: the answer is what counts
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def test_a_huge_request_line_is_refused_without_a_traceback(
    served: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    url, _ad = served
    answer = raw_request(url, b"GET /api/ads?q=" + b"a" * 100_000 + b" HTTP/1.1")
    assert re.match(rb"HTTP/1\.[01] 400 ", answer), answer[:200]
    assert b"a" * 200 not in answer
    no_traceback(caplog)
    # It was noticed, in one line.
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.getMessage() for r in refused] == ["refused a malformed HTTP request (LineTooLong)"]
    # The server is none the worse for it.
    assert caller().get(f"{url}/api/ads", timeout=30).status_code == 200
