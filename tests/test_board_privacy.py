"""A block reveals nothing, on SQLite and PostgreSQL: what a blocked person sees never differs from what a
stranger sees.

Differential tests: A blocked B (in the chat about one of A's ads) and C is a stranger whose past mirrors B's
with another author, D, who merely ended the chat. B and C then do the same things to A's other ads through
the HTTP API, and every answer (status, body with ids normalised, the ad's `invited` flag, the ads list, the
daily limit, reports, refusals) must be identical. Meanwhile nothing B writes reaches A, while C's does; B's
other chat with A goes silent for A instead of ending (ending it would tell B whom it was with); and the
blocker writing to the blocked person is answered as anyone is and never arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select

from board.service import BoardService, ChatSide, RelayMessage, RelayRoute, UserRef
from board.services.outbox import OutboxItem
from board.services.reports import FULL_WEIGHT
from board.web import create_web_app
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardInvite, BoardReport, ReportTarget
from database.engine import open_database
from database.models import utcnow
from tests.support.stack import TEST_SECRET_KEY
from tests.support.webapp_stub import BOT_TOKEN, ServedBoard, establish, sign_init_data, tg_user

A, B, C, D = 7_300_000_001, 7_300_000_002, 7_300_000_003, 7_300_000_004  # blocker, blocked, stranger, C's author
E = 7_300_000_005  # someone both B and C chat with
TELEGRAM_IDS = (A, B, C, D, E)
LIMITS = BoardLimits(ads_per_user=10, invites_per_day=5, hide_after_reports=50)

# The two ads a person wrote to before the probes (the same title and text for A's and D's), and A's others.
MET = ("Bicycle", "A red city bicycle, barely used, with a basket and lights.", "sale")
ALSO = ("Piano", "An upright piano, tuned last spring; you carry it downstairs.", "sale")
OTHERS = {
    "p1": ("Sofa", "Grey three-seat sofa, washable covers, pet free home.", "housing"),
    "p2": ("Maths tutor", "Evening lessons for school pupils, algebra and geometry.", "services"),
    "p3": ("Kitten", "Looking for a calm kitten to adopt; we have a garden.", "other"),
    "p4": ("Night shifts", "Warehouse needs two people for weekend nights.", "jobs"),
}
FIRST_MET = "Hello, is the bicycle still for sale?"
FIRST_ALSO = "Could you tell me what you want for the piano"
PROBE_MESSAGES = {
    "p1": "Would you deliver the sofa to my place?",
    "p2": "My daughter needs help with fractions twice a week",
    "p3": "We had cats for years and would love another one",
    "p4": "I worked in logistics before; which nights exactly?",
}


class Caller:
    """One person using the Mini App's API; no answer may carry a Telegram id."""

    def __init__(self, base: str, tg_id: int) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = "tma " + sign_init_data(tg_user(tg_id))

    def call(self, method: str, path: str, body: dict[str, str] | None = None) -> tuple[int, Any]:
        response = self.session.request(method, self.base + path, json=body, timeout=60)
        for tg_id in TELEGRAM_IDS:
            assert str(tg_id) not in response.text, f"{method} {path} leaked a Telegram id"
        assert response.status_code < 500, response.text
        return response.status_code, response.json()


class Clock:
    """The service's time: still unless a test moves it (so timestamps in B's and C's answers are equal)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta = timedelta(minutes=1)) -> None:
        self.now += by


@dataclass
class World:
    """A blocked B in the chat about A's ad MET (B also has a chat about A's ALSO, now silent for A); C wrote to D's
    MET and ALSO, and D ended the chat about MET."""

    service: BoardService
    clock: Clock
    served: ServedBoard
    a: UserRef
    b: UserRef
    c: UserRef
    d: UserRef
    roles_b: dict[str, str]  # public ad id -> role, as B's history makes it
    roles_c: dict[str, str]
    others: dict[str, str]  # role -> A's other ads
    chats_b: dict[str, str]  # role -> B's chat about A's ad
    chats_c: dict[str, str]

    def caller(self, tg_id: int) -> Caller:
        return Caller(self.served.url, tg_id)

    def outbox_of(self, user: UserRef, after: int = 0) -> list[OutboxItem]:
        return [item for item in self.service.pending_outbox(after) if item.recipient_id == user.id]

    def mark(self) -> int:
        return max((item.id for item in self.service.pending_outbox()), default=0)

    def invite_status(self, invite_id: str) -> str:
        with self.service.sessions() as session:
            status = session.scalar(select(BoardInvite.status).where(BoardInvite.public_id == invite_id))
            assert status is not None
            return status


def post(service: BoardService, author: UserRef, ad: tuple[str, str, str]) -> str:
    return service.create_ad(author, *ad).id


def chat_about(service: BoardService, guest: UserRef, author: UserRef, ad: str, message: str) -> str:
    """`guest` writes to `ad`, its `author` accepts: the chat's id."""
    decision = service.decide_invite(author, service.send_invite(guest, ad, message).invite_id, True)
    assert decision.chat_id is not None
    return decision.chat_id


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    engine, sessions = open_database(database_url)
    clock = Clock()
    service = BoardService(sessions, SecretBox(TEST_SECRET_KEY), LIMITS, clock=clock)
    for tg_id in (A, B, C, D):
        establish(service, tg_id)  # everyone's reports weigh the same
    a, b, c, d = (service.user(tg_id) for tg_id in (A, B, C, D))
    a_met, d_met, a_also, d_also = (
        post(service, a, MET),
        post(service, d, MET),
        post(service, a, ALSO),
        post(service, d, ALSO),
    )
    others = {role: post(service, a, ad) for role, ad in OTHERS.items()}
    chats_b = {
        "met": chat_about(service, b, a, a_met, FIRST_MET),
        "also": chat_about(service, b, a, a_also, FIRST_ALSO),
    }
    chats_c = {
        "met": chat_about(service, c, d, d_met, FIRST_MET),
        "also": chat_about(service, c, d, d_also, FIRST_ALSO),
    }
    service.block(a, chats_b["met"])
    service.end_chat(d, chats_c["met"])
    roles_b = {a_met: "met", a_also: "also", d_met: "other's met", d_also: "other's also"}
    roles_c = {d_met: "met", d_also: "also", a_met: "other's met", a_also: "other's also"}
    served = ServedBoard(lambda: create_web_app(service, BOT_TOKEN, requests_per_minute=10_000)).start()
    yield World(service, clock, served, a, b, c, d, roles_b, roles_c, others, chats_b, chats_c)
    served.stop()
    engine.dispose()


def normal(value: Any, names: dict[str, str]) -> Any:
    """`value` with ids named by role (`names`), fresh ids by kind, and aliases (random per chat) blanked."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("invite_id", "report_id", "invite"):
                out[key] = f"<{key}>"
            elif key == "alias":
                out[key] = "<alias>"
            else:
                out[key] = normal(item, names)
        return out
    if isinstance(value, list | tuple):
        return [normal(item, names) for item in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def probe(caller: Caller, roles: dict[str, str], others: dict[str, str]) -> list[tuple[str, int, Any]]:
    """The same script of requests, for anyone: each step's name, status and normalised body. A page of ads is
    compared as a set here (ids renamed by role lose their order); its order of real ids is checked apart."""
    ad = {role: public_id for public_id, role in roles.items()} | others
    steps: list[tuple[str, str, str, dict[str, str] | None]] = [
        ("me", "GET", "/api/me", None),
        ("list", "GET", "/api/ads", None),
        ("search", "GET", "/api/ads?q=piano", None),
        ("category", "GET", "/api/ads?category=sale", None),
        ("my ads", "GET", "/api/me/ads", None),
        ("the ad met", "GET", f"/api/ads/{ad['met']}", None),
        ("the ad also", "GET", f"/api/ads/{ad['also']}", None),
        ("the ad p1", "GET", f"/api/ads/{ad['p1']}", None),
        ("write p1", "POST", f"/api/ads/{ad['p1']}/invite", {"message": PROBE_MESSAGES["p1"]}),
        ("the ad p1 written", "GET", f"/api/ads/{ad['p1']}", None),
        ("write p1 again", "POST", f"/api/ads/{ad['p1']}/invite", {"message": "Sorry, one more question"}),
        ("write met again", "POST", f"/api/ads/{ad['met']}/invite", {"message": "Are you still there?"}),
        ("write also again", "POST", f"/api/ads/{ad['also']}/invite", {"message": "Hello again, it's me"}),
        ("write p2", "POST", f"/api/ads/{ad['p2']}/invite", {"message": PROBE_MESSAGES["p2"]}),
        ("write p3", "POST", f"/api/ads/{ad['p3']}/invite", {"message": PROBE_MESSAGES["p3"]}),
        ("write p4 over the limit", "POST", f"/api/ads/{ad['p4']}/invite", {"message": PROBE_MESSAGES["p4"]}),
        ("report p1", "POST", f"/api/ads/{ad['p1']}/report", {"reason": "looks fake"}),
        ("report p1 again", "POST", f"/api/ads/{ad['p1']}/report", {"reason": "really fake"}),
        ("report met", "POST", f"/api/ads/{ad['met']}/report", {"reason": "rude author"}),
        ("report also", "POST", f"/api/ads/{ad['also']}/report", {"reason": ""}),
        ("the ad met after", "GET", f"/api/ads/{ad['met']}", None),
        ("list after", "GET", "/api/ads", None),
    ]
    results = []
    for name, method, path, body in steps:
        status, answer = caller.call(method, path, body)
        answer = normal(answer, roles)
        if isinstance(answer, dict) and "ads" in answer:
            answer["ads"] = sorted(answer["ads"], key=lambda item: item["id"])
        results.append((name, status, answer))
    return results


def ids_in_order(caller: Caller, path: str) -> list[str]:
    return [item["id"] for item in caller.call("GET", path)[1]["ads"]]


def notices(items: list[OutboxItem], names: dict[str, str]) -> list[tuple[str, Any]]:
    return [(item.kind, normal(item.payload, names)) for item in items]


def side(chat: ChatSide | None, names: dict[str, str]) -> tuple[str, str, str] | None:
    return None if chat is None else (names.get(chat.chat_id, chat.chat_id), "<alias>", chat.ad_title)


def route(found: RelayRoute, names: dict[str, str]) -> tuple[str, Any, list[Any]]:
    return found.outcome, side(found.side, names), [side(chat, names) for chat in found.chats]


# ---- the blocked person and a stranger -------------------------------------------------------------------------


def test_the_blocked_person_sees_exactly_what_a_stranger_sees(world: World) -> None:
    service, a, b, c = world.service, world.a, world.b, world.c
    blocked, stranger = world.caller(B), world.caller(C)
    before = world.mark()

    seen_by_b = probe(blocked, world.roles_b, world.others)
    seen_by_c = probe(stranger, world.roles_c, world.others)

    assert seen_by_b == seen_by_c
    answers = {name: (status, body) for name, status, body in seen_by_b}
    # The script did what it means to (so "identical" is not "identically broken").
    assert answers["write p1"] == (201, {"invite_id": "<invite_id>"})
    assert answers["the ad p1"][1]["invited"] is False and answers["the ad p1 written"][1]["invited"] is True
    assert answers["the ad met"][1]["invited"] is True and answers["the ad met"][1]["status"] == "open"
    for refused in ("write p1 again", "write met again", "write also again"):
        assert answers[refused][0] == 409 and answers[refused][1]["error"] == "already_invited"
    assert (answers["write p2"][0], answers["write p3"][0]) == (201, 201)
    assert answers["write p4 over the limit"][0] == 429
    assert answers["write p4 over the limit"][1]["error"] == "invite_limit"
    assert [answers[name][0] for name in ("report p1", "report met", "report also")] == [201, 201, 201]
    assert answers["report p1 again"][0] == 409 and answers["report p1 again"][1]["error"] == "already_reported"
    listed = {item["id"]: item["invited"] for item in answers["list after"][1]["ads"]}
    assert listed == {"met": True, "also": True, "other's met": False, "other's also": False,
                      **{world.others[role]: role != "p4" for role in OTHERS}}  # fmt: skip
    assert answers["my ads"] == (200, {"ads": []})
    for path in ("/api/ads", "/api/ads?q=piano", "/api/ads?category=sale"):
        assert ids_in_order(blocked, path) == ids_in_order(stranger, path)

    # What each of them wrote: B's first messages are swallowed, C's wait for A; only C's cards are queued.
    with service.sessions() as session:
        written = session.execute(select(BoardInvite.sender_id, BoardInvite.public_id, BoardInvite.status)).all()
        reports = session.execute(select(BoardReport.reporter_id, BoardReport.weight, BoardReport.status)).all()
    by_b = sorted(status for sender, _, status in written if sender == b.id)
    assert by_b == ["accepted", "accepted", "swallowed", "swallowed", "swallowed"]  # 2 before the block, 3 after
    by_c = sorted(status for sender, _, status in written if sender == c.id)
    assert by_c == ["accepted", "accepted", "pending", "pending", "pending"]
    waiting = {public_id for sender, public_id, status in written if sender == c.id and status == "pending"}
    new_for_a = world.outbox_of(a, before)
    assert [item.kind for item in new_for_a] == ["invite"] * 3
    assert {item.payload["invite"] for item in new_for_a} == waiting
    # B's reports stand as C's do: all stored, open, and weighing in full.
    filed = sorted((reporter == b.id, weight, status) for reporter, weight, status in reports)
    assert filed == [(False, FULL_WEIGHT, "open")] * 3 + [(True, FULL_WEIGHT, "open")] * 3
    # Nothing new for either of them.
    assert world.outbox_of(b, before) == world.outbox_of(c, before) == []


def test_the_other_chat_goes_silent_for_the_blocker_and_the_blocked_is_not_told(world: World) -> None:
    service, a, b, c, d = world.service, world.a, world.b, world.c, world.d
    chats = {chat_id: role for role, chat_id in world.chats_b.items()}
    chats_c = {chat_id: role for role, chat_id in world.chats_c.items()}

    # What B heard so far is what C heard: both accepted, one ended — exactly one "ended" for B, about MET.
    heard_b, heard_c = world.outbox_of(b), world.outbox_of(c)
    assert notices(heard_b, chats) == notices(heard_c, chats_c)
    keys = [(item.payload["key"], item.payload["values"]["partner"]["title"]) for item in heard_b]
    assert keys == [("invite.accepted_guest", "Bicycle"), ("invite.accepted_guest", "Piano"),
                    ("chat.ended_by_partner", "Bicycle")]  # fmt: skip

    # B still has the chat about ALSO, as C has hers; A no longer sees it (D, who only ended one, still does).
    assert [side(chat, chats) for chat in service.active_chats(b)] == [("also", "<alias>", "Piano")]
    assert [side(chat, chats_c) for chat in service.active_chats(c)] == [("also", "<alias>", "Piano")]
    assert service.active_chats(a) == []
    assert [chat.chat_id for chat in service.active_chats(d)] == [world.chats_c["also"]]
    assert side(service.chat_side(b, world.chats_b["also"]), chats) == side(
        service.chat_side(c, world.chats_c["also"]), chats_c
    )

    # Both also chat with E, later: that chat comes first in their lists.
    world.clock.advance()
    e = service.user(E)
    kettle = post(service, e, ("Kettle", "An electric kettle, one litre, quiet.", "sale"))
    chats[chat_about(service, b, e, kettle, "Does the kettle switch off by itself?")] = "kettle"
    chats_c[chat_about(service, c, e, kettle, "Does the kettle switch off by itself?")] = "kettle"
    assert [chats[chat.chat_id] for chat in service.active_chats(b)] == ["kettle", "also"]
    assert [chats_c[chat.chat_id] for chat in service.active_chats(c)] == ["kettle", "also"]

    # Writing in the chat about ALSO: the same answers for B and C, but only C's message is queued for its partner.
    world.clock.advance()
    before = world.mark()
    hello = RelayMessage((501,), "text", "Is the piano still there?", None, False)
    assert (
        route(service.enqueue_relay(b, hello), chats)
        == route(service.enqueue_relay(c, hello), chats_c)
        == ("choose", None, [("kettle", "<alias>", "Kettle"), ("also", "<alias>", "Piano")])
    )
    sent_b = service.enqueue_relay(b, hello, world.chats_b["also"])
    sent_c = service.enqueue_relay(c, hello, world.chats_c["also"])
    assert route(sent_b, chats) == route(sent_c, chats_c) == ("queued", ("also", "<alias>", "Piano"), [])
    assert world.outbox_of(a, before) == []
    [relay] = world.outbox_of(d, before)
    assert (relay.kind, relay.payload["chat"]) == ("relay", world.chats_c["also"])
    assert service.claim_outbox(relay.id) is not None
    service.outbox_sent(relay.id, [9001])  # delivered to D as their message 9001
    edit = ("Is the piano still for sale?", False, [])
    assert service.enqueue_edit(b, 501, *edit) == 0  # nobody to edit it for
    assert world.outbox_of(a, before) == []

    # The chat written in comes first for both now, and a reply to that message goes there for both.
    assert [chats[chat.chat_id] for chat in service.active_chats(b)] == ["also", "kettle"]
    assert [chats_c[chat.chat_id] for chat in service.active_chats(c)] == ["also", "kettle"]
    reply = RelayMessage((502,), "text", "Sorry, I mean the upright one", 501, False)
    assert (
        route(service.enqueue_relay(b, reply), chats)
        == route(service.enqueue_relay(c, reply), chats_c)
        == ("queued", ("also", "<alias>", "Piano"), [])
    )
    assert world.outbox_of(a, before) == []
    [answer] = world.outbox_of(d, relay.id)
    prepared = service.claim_outbox(answer.id)
    assert prepared is not None and prepared.reply_to == 9001  # on D's side, a reply to D's copy

    # Reporting the chats, ended or not, is accepted for both.
    for role in ("met", "also"):
        assert service.report(b, ReportTarget.CHAT, world.chats_b[role], "rude")
        assert service.report(c, ReportTarget.CHAT, world.chats_c[role], "rude")

    # Ending it: B is answered as C is; D hears of it, A (who left it) does not.
    ended_b, ended_c = service.end_chat(b, world.chats_b["also"]), service.end_chat(c, world.chats_c["also"])
    assert (chats[ended_b.chat_id], ended_b.ad_title) == (chats_c[ended_c.chat_id], ended_c.ad_title)
    assert world.outbox_of(a, before) == []
    assert [item.payload["key"] for item in world.outbox_of(d, before) if item.kind == "notice"] == [
        "chat.ended_by_partner"
    ]
    assert [chats[chat.chat_id] for chat in service.active_chats(b)] == ["kettle"]
    assert [chats_c[chat.chat_id] for chat in service.active_chats(c)] == ["kettle"]


def test_the_blocker_writing_to_the_blocked_is_answered_as_anyone_and_never_arrives(world: World) -> None:
    service, a, b, c = world.service, world.a, world.b, world.c
    lamp = ("Desk lamp", "A brass desk lamp with a green shade, works fine.", "other")
    ads = {post(service, b, lamp): "blocked's", post(service, c, lamp): "stranger's"}
    same = {ad: "<ad>" for ad in ads}  # the ad's id differs; nothing else may
    blocker = world.caller(A)
    before = world.mark()

    answers = {}
    for ad, whose in ads.items():
        answers[whose] = [
            normal(blocker.call("GET", f"/api/ads/{ad}"), same),
            normal(blocker.call("POST", f"/api/ads/{ad}/invite", {"message": "Is the lamp still available?"}), same),
            normal(blocker.call("GET", f"/api/ads/{ad}"), same),
            normal(blocker.call("POST", f"/api/ads/{ad}/invite", {"message": "Hello?"}), same),
            normal(blocker.call("POST", f"/api/ads/{ad}/report", {"reason": "odd"}), same),
        ]
    assert answers["blocked's"] == answers["stranger's"]
    assert [status for status, _ in answers["blocked's"]] == [200, 201, 200, 409, 201]
    assert answers["blocked's"][2][1]["invited"] is True

    # The stranger gets the card; the blocked person gets nothing at all, and the invitation is swallowed.
    assert world.outbox_of(b, before) == []
    [card] = world.outbox_of(c, before)
    assert card.kind == "invite" and world.invite_status(card.payload["invite"]) == "pending"
    with service.sessions() as session:
        to_b = session.scalars(
            select(BoardInvite.status).where(BoardInvite.sender_id == a.id, BoardInvite.status != "accepted")
        ).all()
    assert sorted(to_b) == ["pending", "swallowed"]


def test_an_invitation_from_before_the_block_opens_a_chat_the_other_side_never_sees(
    database_url: str,
) -> None:
    engine, sessions = open_database(database_url)
    service = BoardService(sessions, SecretBox(TEST_SECRET_KEY), LIMITS)
    try:
        a, b = service.user(A), service.user(B)
        met = chat_about(service, b, a, post(service, a, MET), FIRST_MET)
        from_b = service.send_invite(b, post(service, a, ALSO), FIRST_ALSO)  # waiting when A blocks B
        from_a = service.send_invite(a, post(service, b, OTHERS["p1"]), PROBE_MESSAGES["p1"])
        service.block(a, met)
        before = max((item.id for item in service.pending_outbox()), default=0)

        # A accepts B's: A meets a partner who never answers; B is never told it was accepted.
        opened = service.decide_invite(a, from_b.invite_id, True)
        assert opened.accepted and opened.chat_id is not None
        assert [chat.chat_id for chat in service.active_chats(a)] == [opened.chat_id]
        assert service.active_chats(b) == []
        assert service.enqueue_relay(a, RelayMessage((7,), "text", "Hello?", None, False)).outcome == "queued"

        # B accepts A's: B meets a partner who never answers (as with anyone who does not); A never sees it.
        accepted = service.decide_invite(b, from_a.invite_id, True)
        assert accepted.accepted and accepted.chat_id is not None and accepted.author_alias.startswith("#")
        assert [chat.chat_id for chat in service.active_chats(b)] == [accepted.chat_id]
        assert [chat.chat_id for chat in service.active_chats(a)] == [opened.chat_id]
        assert service.enqueue_relay(b, RelayMessage((8,), "text", "Hi!", None, False)).outcome == "queued"

        assert [item for item in service.pending_outbox(before) if item.recipient_id in (a.id, b.id)] == []
    finally:
        engine.dispose()
