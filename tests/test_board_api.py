"""The board's Mini App API end to end: a real aiohttp server on 127.0.0.1 over a real database, called with
initData signed the way Telegram signs it; plus a schemathesis fuzz of the served OpenAPI document."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from board.service import BoardService
from board.web import create_web_app
from board.web.openapi import openapi_document
from config import BoardLimits
from database.board_models import AD_TEXT_MAX, MESSAGE_MAX, REASON_MAX, TITLE_MAX, BoardAd, BoardInvite, BoardUser
from tests.support.webapp_stub import (
    BOT_TOKEN,
    ServedBoard,
    WakeRecorder,
    board_service,
    establish,
    sign_init_data,
    tg_user,
)

AUTHOR = 7_100_000_001
GUEST = 7_100_000_002
THIRD = 7_100_000_003
ALL_IDS = (AUTHOR, GUEST, THIRD)


class Caller:
    """One Mini App user talking to the API; every answer is checked to carry no Telegram id."""

    def __init__(self, base: str, tg_id: int | None, lang: str = "en", header: str | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        if header is not None:
            self.session.headers["Authorization"] = header
        elif tg_id is not None:
            self.session.headers["Authorization"] = "tma " + sign_init_data(tg_user(tg_id, lang))

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, self.base + path, timeout=60, **kwargs)
        for tg_id in ALL_IDS:
            assert str(tg_id) not in response.text, f"{method} {path} leaked a Telegram id"
        if path.startswith("/api/"):
            assert response.headers["Content-Type"].startswith("application/json")
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: object = None, **kwargs: Any) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return self.call("POST", path, **kwargs)

    def delete(self, path: str) -> requests.Response:
        return self.call("DELETE", path)


def refused(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) in ({"error", "message"}, {"error", "message", "field"})
    assert body["error"] == code
    assert body["message"] and not body["message"].startswith("error."), body
    return body


class Board:
    def __init__(self, served: ServedBoard, service: BoardService, engine: Engine, woken: WakeRecorder) -> None:
        self.served = served
        self.service = service
        self.engine = engine
        self.woken = woken

    def as_user(self, tg_id: int, lang: str = "en") -> Caller:
        return Caller(self.served.url, tg_id, lang)

    def anonymous(self, header: str | None = None) -> Caller:
        return Caller(self.served.url, None, header=header)

    def count(self, model: type) -> int:
        with self.service.sessions() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0


BoardFactory = Callable[..., Board]


@pytest.fixture
def make_board(tmp_path: Any) -> Iterator[BoardFactory]:
    started: list[tuple[ServedBoard, Engine]] = []

    def make(url: str | None = None, limits: BoardLimits | None = None, **options: Any) -> Board:
        engine, service = board_service(url or f"sqlite:///{tmp_path / 'board.db'}", limits)
        woken = WakeRecorder()
        served = ServedBoard(lambda: create_web_app(service, BOT_TOKEN, on_enqueued=woken, **options))
        started.append((served.start(), engine))
        return Board(served, service, engine, woken)

    yield make
    for served, engine in started:
        served.stop()
        engine.dispose()


# ---- the whole flow ----------------------------------------------------------------------------------------


def test_browse_post_write_report_close(make_board: BoardFactory, database_url: str) -> None:
    board = make_board(database_url)
    author, guest = board.as_user(AUTHOR, "en"), board.as_user(GUEST, "ru")

    categories = author.get("/api/categories").json()["categories"]
    assert [c["id"] for c in categories][:3] == ["services", "jobs", "sale"]
    assert {"id": "sale", "name": "For sale"} in categories
    assert {"id": "sale", "name": "Продажа"} in guest.get("/api/categories").json()["categories"]
    me = author.get("/api/me").json()
    assert me["lang"] == "en" and me["banned"] is False
    assert me["limits"]["title_max"] == TITLE_MAX and me["limits"]["ads_per_user"] == 3

    assert author.get("/api/ads").json() == {"ads": [], "page": 0, "pages": 1, "total": 0}
    created = author.post(
        "/api/ads", {"title": " Bicycle ", "text": "A red city bike, barely used.", "category": "sale"}
    )
    assert created.status_code == 201, created.text
    bike = created.json()
    assert bike["title"] == "Bicycle" and bike["mine"] is True and bike["status"] == "open"
    flat = author.post("/api/ads", {"title": "Room to let", "text": "Quiet room near the park.", "category": "housing"})
    assert flat.status_code == 201

    page = guest.get("/api/ads").json()
    assert [ad["title"] for ad in page["ads"]] == ["Room to let", "Bicycle"]  # newest first
    assert page["total"] == 2 and not any(ad["mine"] for ad in page["ads"])
    assert [ad["id"] for ad in guest.get("/api/ads", params={"category": "sale"}).json()["ads"]] == [bike["id"]]
    assert [ad["id"] for ad in guest.get("/api/ads", params={"q": "BIKE"}).json()["ads"]] == [bike["id"]]
    assert guest.get("/api/ads", params={"q": "nothing like it"}).json()["total"] == 0
    assert guest.get("/api/ads", params={"page": "1"}).json()["ads"] == []

    seen = guest.get(f"/api/ads/{bike['id']}").json()
    assert seen["text"] == "A red city bike, barely used." and seen["mine"] is False and seen["invited"] is False

    sent = guest.post(f"/api/ads/{bike['id']}/invite", {"message": "Hello! Is it still available?"})
    assert sent.status_code == 201, sent.text
    invite_id = sent.json()["invite_id"]
    assert guest.get(f"/api/ads/{bike['id']}").json()["invited"] is True
    # Stored with its card for the author queued in the outbox (for the bot to send), and the bot woken.
    [card] = board.service.pending_outbox()
    author_ref = board.service.find_user(AUTHOR)
    assert author_ref is not None and card.recipient_id == author_ref.id
    assert (card.kind, card.payload) == ("invite", {"invite": invite_id})
    assert board.woken.calls == 1
    with board.service.sessions() as session:
        invite = session.scalar(select(BoardInvite).where(BoardInvite.public_id == invite_id))
        assert invite is not None and invite.message == "Hello! Is it still available?"

    reported = guest.post(f"/api/ads/{flat.json()['id']}/report", {"reason": "Looks fake"})
    assert reported.status_code == 201, reported.text
    assert [r.id for r in board.service.report_queue()] == [reported.json()["report_id"]]

    mine = author.get("/api/me/ads").json()["ads"]
    assert {ad["id"] for ad in mine} == {bike["id"], flat.json()["id"]} and all(ad["mine"] for ad in mine)
    closed = author.delete(f"/api/ads/{bike['id']}")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert [ad["id"] for ad in guest.get("/api/ads").json()["ads"]] == [flat.json()["id"]]
    assert guest.get("/api/me/ads").json() == {"ads": []}


# ---- who is asking ------------------------------------------------------------------------------------------


def test_unproven_callers_are_refused_and_change_nothing(make_board: BoardFactory) -> None:
    board = make_board(max_age=3600.0)
    ad = board.as_user(AUTHOR).post("/api/ads", {"title": "Lamp", "text": "A desk lamp.", "category": "sale"}).json()
    users, ads, invites = board.count(BoardUser), board.count(BoardAd), board.count(BoardInvite)
    now = int(time.time())

    forged_hash = "tma " + sign_init_data(tg_user(GUEST), bot_token="987654321:another-bots-token")
    genuine = sign_init_data(tg_user(GUEST))
    claimed_other = "tma " + genuine.replace(str(GUEST), str(THIRD))  # the signed user swapped for another
    no_hash = "tma " + "&".join(p for p in genuine.split("&") if not p.startswith("hash="))
    stale = "tma " + sign_init_data(tg_user(GUEST), auth_date=now - 3600 - 120)
    future = "tma " + sign_init_data(tg_user(GUEST), auth_date=now + 3600)
    no_user = "tma " + sign_init_data(None)
    headers = [
        None,
        "",
        "tma",
        "Bearer " + genuine,
        genuine,
        forged_hash,
        claimed_other,
        no_hash,
        stale,
        future,
        "tma " + "x" * 7000,
        "tma %%%&&&===",
        no_user,
    ]
    for header in headers:
        caller = board.anonymous(header)
        refused(caller.get("/api/ads"), 401, "unauthorized")
        refused(caller.get("/api/me"), 401, "unauthorized")
        refused(
            caller.post("/api/ads", {"title": "Spam", "text": "Spam text.", "category": "other"}), 401, "unauthorized"
        )
        refused(caller.post(f"/api/ads/{ad['id']}/invite", {"message": "hi"}), 401, "unauthorized")
        refused(caller.post(f"/api/ads/{ad['id']}/report", {"reason": "x"}), 401, "unauthorized")
        refused(caller.delete(f"/api/ads/{ad['id']}"), 401, "unauthorized")
    assert (board.count(BoardUser), board.count(BoardAd), board.count(BoardInvite)) == (users, ads, invites)
    assert board.service.get_ad(None, ad["id"]).status == "open"
    assert board.woken.calls == 0 and board.service.pending_outbox() == []
    # The refusal speaks the language the (unproven) initData asks for.
    ru = "tma " + sign_init_data(tg_user(GUEST, "ru"), bot_token="987654321:another-bots-token")
    assert "Telegram" in refused(board.anonymous(ru).get("/api/ads"), 401, "unauthorized")["message"]
    assert refused(board.anonymous(ru).get("/api/ads"), 401, "unauthorized")["message"].startswith("Откройте")
    # Fresh, genuine data for the same user works.
    assert board.anonymous("tma " + genuine).get("/api/ads").status_code == 200


def test_static_page_and_openapi_need_no_sign_in(make_board: BoardFactory) -> None:
    board = make_board()
    visitor = board.anonymous()
    page = visitor.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "https://telegram.org/js/telegram-web-app.js" in page.text and "/app.js" in page.text
    assert visitor.get("/app.js").headers["Content-Type"].startswith("text/javascript")
    assert visitor.get("/style.css").headers["Content-Type"].startswith("text/css")
    assert visitor.get("/telegram-web-app.js").status_code == 404  # served only when a stub is configured
    document = visitor.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["telegramInitData"]["name"] == "Authorization"
    assert {"/api/ads", "/api/ads/{ad_id}", "/api/ads/{ad_id}/invite", "/api/ads/{ad_id}/report", "/api/me/ads"} <= set(
        document["paths"]
    )


# ---- refusals -----------------------------------------------------------------------------------------------


def test_refusals_carry_codes_statuses_and_texts(make_board: BoardFactory) -> None:
    board = make_board(limits=BoardLimits(invites_per_day=2, hide_after_reports=1))
    author, guest, third = board.as_user(AUTHOR), board.as_user(GUEST, "ru"), board.as_user(THIRD)
    ad = author.post("/api/ads", {"title": "Guitar", "text": "Acoustic guitar.", "category": "sale"}).json()
    other = author.post(
        "/api/ads", {"title": "Piano lessons", "text": "Weekly lessons.", "category": "services"}
    ).json()

    body = refused(guest.delete(f"/api/ads/{ad['id']}"), 403, "not_your_ad")
    assert body["message"] == "Это не ваше объявление."
    refused(author.post(f"/api/ads/{ad['id']}/invite", {"message": "me?"}), 403, "own_ad")
    refused(author.post(f"/api/ads/{ad['id']}/report", {"reason": "mine"}), 403, "own_ad")
    refused(guest.get("/api/ads/no-such-ad"), 404, "ad_not_found")
    refused(guest.post("/api/ads/no-such-ad/invite", {"message": "hi"}), 404, "ad_not_found")
    refused(guest.get("/api/ads/" + "x" * 300), 404, "ad_not_found")

    # Texts: empty, too long (with the limit in the message), wrong types, unknown fields.
    refused(guest.post("/api/ads", {"title": "  ", "text": "x", "category": "sale"}), 400, "title_empty")
    refused(guest.post("/api/ads", {"title": "t", "text": "", "category": "sale"}), 400, "text_empty")
    refused(guest.post("/api/ads", {"text": "no title", "category": "sale"}), 400, "title_empty")
    long_title = refused(
        guest.post("/api/ads", {"title": "x" * (TITLE_MAX + 1), "text": "y", "category": "sale"}), 400, "title_too_long"
    )
    assert str(TITLE_MAX) in long_title["message"]
    refused(
        guest.post("/api/ads", {"title": "t", "text": "y " * AD_TEXT_MAX, "category": "sale"}), 400, "text_too_long"
    )
    refused(guest.post("/api/ads", {"title": "t", "text": "y", "category": "cars"}), 400, "bad_category")
    refused(guest.post(f"/api/ads/{ad['id']}/invite", {"message": "   "}), 400, "message_empty")
    refused(guest.post(f"/api/ads/{ad['id']}/invite", {"message": "m" * (MESSAGE_MAX + 1)}), 400, "message_too_long")
    refused(guest.post(f"/api/ads/{ad['id']}/report", {"reason": "r" * (REASON_MAX + 1)}), 400, "reason_too_long")
    refused(
        guest.post("/api/ads", {"title": "Visit", "text": "see https://spam.example", "category": "sale"}),
        400,
        "spam_link",
    )
    bad_bodies: list[bytes] = [
        b"{not json",
        b"",
        b"[]",
        b'"a string"',
        b"null",
        b'{"title": 5, "text": "x", "category": "sale"}',
        b'{"title": ["t"], "text": "x", "category": "sale"}',
        b'{"title": "t", "text": "x", "category": null}',
        b'{"title": "t", "text": "x", "category": "sale", "author_id": 1}',
        b'{"title": "t\\u0000", "text": "x", "category": "sale"}',
        b'{"title": "\\ud800", "text": "x", "category": "sale"}',
        b"\xff\xfe\x00garbage",
        b"[" * 50_000 + b"]" * 50_000,
        json.dumps({"title": "t", "text": "x" * (70 * 1024), "category": "sale"}).encode(),
    ]
    for raw in bad_bodies:
        refused(guest.post("/api/ads", data=raw, headers={"Content-Type": "application/json"}), 400, "bad_request")
    refused(guest.post(f"/api/ads/{ad['id']}/invite", data=b'{"message": "hi", "to": 1}'), 400, "bad_request")
    refused(guest.post(f"/api/ads/{ad['id']}/report", data=b'{"reason": 1}'), 400, "bad_request")
    for params in (
        {"page": "-1"},
        {"page": "x"},
        {"page": "99999"},
        {"category": ""},
        {"category": "cars"},
        {"q": "q" * 101},
    ):
        assert guest.get("/api/ads", params=params).status_code == 400, params
    refused(guest.get("/api/nowhere"), 404, "not_found")
    assert guest.call("PUT", "/api/ads").status_code == 405
    assert board.count(BoardInvite) == 0

    # One first message per ad; the second is a conflict.
    assert guest.post(f"/api/ads/{ad['id']}/invite", {"message": "Is it still for sale?"}).status_code == 201
    refused(guest.post(f"/api/ads/{ad['id']}/invite", {"message": "Hello again, anyone?"}), 409, "already_invited")
    # The daily limit of first messages (2 here).
    assert guest.post(f"/api/ads/{other['id']}/invite", {"message": "Which days do you teach?"}).status_code == 201
    third_ad = third.post("/api/ads", {"title": "Old sofa", "text": "Free to pick up.", "category": "other"}).json()
    body = refused(
        guest.post(f"/api/ads/{third_ad['id']}/invite", {"message": "Can I come today?"}), 429, "invite_limit"
    )
    assert "2" in body["message"]
    assert len(board.service.pending_outbox()) == 2 and board.woken.calls == 2

    # A closed ad takes no first message; a hidden one is gone for everyone but its author.
    author.delete(f"/api/ads/{other['id']}")
    refused(third.post(f"/api/ads/{other['id']}/invite", {"message": "Still on?"}), 409, "ad_closed")
    assert third.get(f"/api/ads/{other['id']}").json()["status"] == "closed"
    establish(board.service, GUEST)  # an established reporter's report weighs fully: it hides the ad (limit 1)
    assert guest.post(f"/api/ads/{third_ad['id']}/report", {"reason": "spam"}).status_code == 201
    refused(guest.post(f"/api/ads/{third_ad['id']}/report", {}), 404, "ad_not_found")  # hidden: as opening it
    refused(author.get(f"/api/ads/{third_ad['id']}"), 404, "ad_not_found")
    assert third.get(f"/api/ads/{third_ad['id']}").json()["status"] == "reported"
    assert third_ad["id"] not in {a["id"] for a in author.get("/api/ads").json()["ads"]}


def test_ad_limit_and_banned_user(make_board: BoardFactory) -> None:
    board = make_board(limits=BoardLimits(ads_per_user=1, hide_after_reports=5))
    author, guest = board.as_user(AUTHOR), board.as_user(GUEST)
    ad = author.post("/api/ads", {"title": "Drill", "text": "Cordless drill.", "category": "sale"}).json()
    refused(author.post("/api/ads", {"title": "Saw", "text": "A hand saw.", "category": "sale"}), 429, "ad_limit")
    report = guest.post(f"/api/ads/{ad['id']}/report", {"reason": "stolen?"}).json()["report_id"]
    board.service.ban(report, "moderator")
    assert author.get("/api/me").json()["banned"] is True
    refused(author.post("/api/ads", {"title": "Saw", "text": "A hand saw.", "category": "sale"}), 403, "banned")
    assert author.get("/api/ads").status_code == 200  # reading stays possible


def test_rate_limit_answers_429_before_touching_the_database(make_board: BoardFactory) -> None:
    board = make_board(requests_per_minute=5)
    caller = board.as_user(GUEST)
    statuses = [caller.get("/api/ads").status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429] * 3
    refused(caller.get("/api/ads"), 429, "rate_limited")
    assert board.as_user(THIRD).get("/api/ads").status_code == 200  # per user


def test_a_first_message_waits_in_the_outbox_while_no_bot_runs(make_board: BoardFactory, tmp_path: Any) -> None:
    engine, service = board_service(f"sqlite:///{tmp_path / 'alone.db'}")
    with ServedBoard(lambda: create_web_app(service, BOT_TOKEN)) as served:
        author, guest = Caller(served.url, AUTHOR), Caller(served.url, GUEST)
        ad = author.post("/api/ads", {"title": "Kettle", "text": "Electric kettle.", "category": "sale"}).json()
        sent = guest.post(f"/api/ads/{ad['id']}/invite", {"message": "I'd like it."})
        assert sent.status_code == 201
        assert guest.get(f"/api/ads/{ad['id']}").json()["invited"] is True
    assert [item.payload for item in service.pending_outbox()] == [{"invite": sent.json()["invite_id"]}]
    engine.dispose()


# ---- fuzzing the documented API -----------------------------------------------------------------------------


FUZZ_LIMITS = BoardLimits(ads_per_user=1000, invites_per_day=1000)
fuzz_schema = schemathesis.openapi.from_dict(openapi_document(FUZZ_LIMITS))
# The Authorization header is the test's own (a fresh, valid initData on every call), not a fuzzed input.
fuzz_schema.config.generation.update(modes=list(GenerationMode), database="none", with_security_parameters=False)


@pytest.fixture(scope="module")
def fuzzed_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedBoard, list[str]]]:
    """One board for every fuzzed operation, with a few ads (a fuzzed author's ads stay within the limits)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'board.db'}"
    engine, service = board_service(url, FUZZ_LIMITS)
    served = ServedBoard(lambda: create_web_app(service, BOT_TOKEN, requests_per_minute=1_000_000)).start()
    author = Caller(served.url, AUTHOR)
    ad_ids = []
    for name in ("sale", "jobs", "housing"):
        seeded = author.post("/api/ads", {"title": f"Seed {name}", "text": f"Seeded {name} text.", "category": name})
        ad_ids.append(seeded.json()["id"])
    assert requests.get(served.url + "/api/openapi.json", timeout=60).json() == json.loads(
        json.dumps(openapi_document(FUZZ_LIMITS))
    )  # the fuzzed document is the served one
    yield served, ad_ids
    served.stop()
    engine.dispose()


@fuzz_schema.parametrize()
@fuzz_schema.given(seeded=st.integers(min_value=0, max_value=4))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_openapi_fuzz_never_fails_and_conforms(
    case: Any, seeded: int, fuzzed_board: tuple[ServedBoard, list[str]]
) -> None:
    """Any input, valid or not, gets a documented 2xx/4xx answer of the documented shape, never a 5xx."""
    served, ad_ids = fuzzed_board
    if case.path_parameters and case.meta.generation.mode.is_positive and seeded < len(ad_ids):
        case.path_parameters["ad_id"] = ad_ids[seeded]  # real ads too, not only ids that do not exist
    response = case.call_and_validate(
        base_url=served.url,
        headers={"Authorization": "tma " + sign_init_data(tg_user(GUEST))},
        timeout=60,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
    )
    for tg_id in ALL_IDS:
        assert str(tg_id) not in response.text
