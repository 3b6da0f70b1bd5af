"""What every part of the board's service shares: the database session factory, SECRET_KEY's box, the limits,
the clock, finding people by the keyed hash of their Telegram id, and the per-person lock that makes limits
hold however requests interleave.

`BoardService` (`board.service`) is composed of one class per aggregate (users, ads, invitations, chats,
reports, moderation, statistics, the outbox), each built on `ServiceBase`, as Telethon's client is.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from board import text as board_text
from board.errors import forbidden, invalid
from board.views import UserRef
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardUser
from database.models import utcnow

ALIAS_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no I/O/0/1
PUBLIC_ID_MAX = 24


def new_public_id() -> str:
    """12 URL-safe characters, never starting with `-` or `_` (a command line would take `-x…` for an option)."""
    while True:
        value = secrets.token_urlsafe(9)
        if value[0].isalnum():
            return value


def new_alias() -> str:
    return "#" + "".join(secrets.choice(ALIAS_ALPHABET) for _ in range(2))


def user_ref(row: BoardUser) -> UserRef:
    return UserRef(row.id, row.public_id, row.lang, row.banned_at is not None)


def clean_field(value: object, limit: int, code: str, *, multiline: bool = True, field: str = "") -> str:
    """`value` cleaned (`board.text.clean`), visible and within `limit`; else a `<code>_empty` or
    `<code>_too_long` refusal naming `field` (the API shows it next to that field)."""
    if not isinstance(value, str):
        raise invalid(f"{code}_empty", field=field or code)
    cleaned = board_text.clean(value, multiline=multiline)
    if not cleaned or not board_text.has_visible(cleaned):
        raise invalid(f"{code}_empty", field=field or code)
    if len(cleaned) > limit:
        raise invalid(f"{code}_too_long", field=field or code, limit=limit)
    return cleaned


class ServiceBase:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        limits: BoardLimits,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.limits = limits
        self.clock = clock
        self._tg_id = lru_cache(maxsize=65536)(self._decrypt_tg_id)
        self._expired_at: datetime | None = None

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    # ---- people ------------------------------------------------------------------------------------------

    def _lookup(self, tg_id: int) -> str:
        return self.box.lookup(f"board-user:{tg_id}")

    def _find(self, session: Session, tg_id: int) -> BoardUser | None:
        """The user by the keyed hash of their Telegram id under any key (SECRET_KEY rotation), re-hashed under
        the current one when found by an older."""
        lookups = self.box.lookups(f"board-user:{tg_id}")
        row = session.scalar(select(BoardUser).where(BoardUser.tg_lookup.in_(lookups)).limit(1))
        if row is not None and row.tg_lookup != lookups[0]:
            row.tg_lookup = lookups[0]
            row.tg_enc = self.box.encrypt(str(tg_id))
        return row

    def _decrypt_tg_id(self, token: str) -> int:
        return int(self.box.decrypt(token))

    def _active_user(self, session: Session, ref: UserRef) -> BoardUser:
        row = session.get(BoardUser, ref.id)
        if row is None:
            raise forbidden("unknown_user")
        if row.banned_at is not None:
            raise forbidden("banned")
        return row

    def _lock_user(self, session: Session, user_id: int) -> BoardUser:
        """Serialise everything one person does against their own limits until this transaction ends: a row
        lock on PostgreSQL, the database's write lock on SQLite (taken by a write, as SQLite has no row locks).
        A limit counted after this cannot be beaten by two requests at once. Refuses a banned person."""
        if session.get_bind().dialect.name == "sqlite":
            session.execute(update(BoardUser).where(BoardUser.id == user_id).values(lang=BoardUser.lang))
            row = session.get(BoardUser, user_id, populate_existing=True)
        else:
            row = session.scalar(select(BoardUser).where(BoardUser.id == user_id).with_for_update())
        if row is None:
            raise forbidden("unknown_user")
        if row.banned_at is not None:
            raise forbidden("banned")
        return row

    def telegram_id(self, user_id: int) -> int | None:
        """A board user's Telegram id, decrypted to send them a message (None if they are gone)."""
        with self.sessions() as session:
            token = session.scalar(select(BoardUser.tg_enc).where(BoardUser.id == user_id))
        return None if token is None else self._tg_id(token)
