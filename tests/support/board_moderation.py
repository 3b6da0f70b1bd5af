"""What the board's moderation tests share: a settable clock, a service factory over both databases (the
`clock` and `make_service` fixtures, registered in conftest), and small helpers to age people, post ads, read
statuses, status history and the outbox."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from board.errors import BoardError
from board.service import BoardService, UserRef
from board.services import ad_states
from board.services.ad_states import Actor
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import AdStatus, BoardAd, BoardAdEvent, BoardReport, BoardUser, ReportTarget
from database.engine import open_database
from tests.support.stack import TEST_SECRET_KEY

OPEN, REPORTED, HIDDEN, CLOSED, EXPIRED = "open", "reported", "hidden", "closed", "expired"
WORDS = (
    "bicycle violin sofa lamp kettle drill guitar piano camera jacket boots table chair mirror carpet radio "
    "clock printer scooter tent"
).split()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


ServiceFactory = Callable[..., BoardService]


@pytest.fixture
def make_service(database_url: str, clock: Clock) -> Iterator[ServiceFactory]:
    engines: list[Any] = []

    def make(**limits: Any) -> BoardService:
        engine, sessions = open_database(database_url)
        engines.append(engine)
        return BoardService(sessions, SecretBox(TEST_SECRET_KEY), BoardLimits(**limits), clock=clock)

    yield make
    for engine in engines:
        engine.dispose()


# ---- helpers ----------------------------------------------------------------------------------------------

_serial = itertools.count()


def refused(code: str, action: Callable[..., object], *args: object, **kwargs: object) -> BoardError:
    with pytest.raises(BoardError) as raised:
        action(*args, **kwargs)
    assert raised.value.code == code, raised.value.code
    return raised.value


def aged(service: BoardService, tg_id: int, days: float = 30, lang: str = "ru") -> UserRef:
    """A board user created `days` before the service's clock."""
    user = service.user(tg_id, lang)
    with service.sessions.begin() as session:
        session.execute(
            update(BoardUser).where(BoardUser.id == user.id).values(created_at=service.clock() - timedelta(days=days))
        )
    return user


def post(service: BoardService, author: UserRef, title: str | None = None) -> str:
    """An ad by `author`, with a text unlike any other (so the flood filter never sees two alike)."""
    n = next(_serial)
    word = WORDS[n % len(WORDS)]
    title = title or f"{word.capitalize()} number {n}"
    body = f"{word} {n}: " + " ".join(WORDS[(n + i * 7) % len(WORDS)] for i in range(1, 5)) + f" ({n * 37})"
    return service.create_ad(author, title, body, "sale").id


def status(service: BoardService, ad_id: str) -> str:
    with service.sessions() as session:
        value = session.scalar(select(BoardAd.status).where(BoardAd.public_id == ad_id))
    assert value is not None
    return value


def events(service: BoardService, ad_id: str) -> list[tuple[str, str, str, str]]:
    """The ad's status history: (from, to, actor, reason), oldest first."""
    with service.sessions() as session:
        rows = session.execute(
            select(BoardAdEvent.from_status, BoardAdEvent.to_status, BoardAdEvent.actor, BoardAdEvent.reason)
            .join(BoardAd, BoardAd.id == BoardAdEvent.ad_id)
            .where(BoardAd.public_id == ad_id)
            .order_by(BoardAdEvent.id)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def report_count(service: BoardService) -> int:
    with service.sessions() as session:
        return session.scalar(select(func.count()).select_from(BoardReport)) or 0


def report_ad(service: BoardService, reporter: UserRef, ad_id: str, reason: str = "spam") -> str:
    return service.report(reporter, ReportTarget.AD, ad_id, reason)


def force(service: BoardService, ad_id: str, to: AdStatus, actor: Actor, who: str = "moderator") -> bool:
    """Apply one transition directly, as a request racing with others would."""
    with service.sessions.begin() as session:
        ad = session.scalar(select(BoardAd).where(BoardAd.public_id == ad_id))
        assert ad is not None
        return ad_states.move(session, ad, to, actor, who, service.clock(), "raced")


def notices(service: BoardService, after: int = 0) -> list[tuple[int, str]]:
    return [(item.recipient_id, item.payload["key"]) for item in service.pending_outbox(after) if item.kind == "notice"]


def last_outbox_id(service: BoardService) -> int:
    pending = service.pending_outbox()
    return pending[-1].id if pending else 0


# ---- weight -----------------------------------------------------------------------------------------------
