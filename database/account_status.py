"""What the reconciler records about accounts' statuses: the whole fleet read in one statement
(`account_records`), statuses the workers reported (`apply_account_states`) and the scan's corrections of
statuses live state contradicts (`correct_account_statuses`), each change with its event.

Functions take a `Session` and never commit: the caller's unit of work (`with sessions.begin():`) owns the
transaction. Batch functions issue one statement for many rows: a scan reads and corrects the whole fleet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from common.details import Detail, detail, encoded, english
from database.events import NewEvent, account_subject, record_events
from database.models import Account, FleetEventKind


def _status_event(account_id: int, status: str, said: Detail | None, actor: str, at: datetime) -> NewEvent:
    """An account's new status as a line of the fleet's history ("banned: <why>")."""
    cause = (
        detail("status_change", status=status, cause=said) if said is not None else detail("status_is", status=status)
    )
    return NewEvent(FleetEventKind.ACCOUNT_STATUS, account_subject(account_id), cause, actor, at)


@dataclass(frozen=True)
class ReportedState:
    """An account status as a worker reported it, ready to be recorded."""

    account_id: int
    status: str
    detail: Detail | None
    until: datetime | None
    user_id: int | None
    username: str | None
    name: str | None
    at: datetime


def apply_account_states(session: Session, states: list[ReportedState]) -> list[tuple[int, str, str]]:
    """Record reported states (newest per account); returns (account id, old status, new status) changes.

    A state older than what the record already knows (the scan saw a newer report) is stale and skipped.
    """
    if not states:
        return []
    newest: dict[int, ReportedState] = {}
    for state in states:
        newest[state.account_id] = state
    accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(list(newest))))}
    changes: list[tuple[int, str, str]] = []
    new_events: list[NewEvent] = []
    for account_id, state in newest.items():
        account = accounts.get(account_id)
        if account is None:
            continue
        if account.status_changed_at is not None and state.at < account.status_changed_at:
            continue
        if state.user_id is not None:
            account.tg_user_id, account.tg_username, account.tg_name = state.user_id, state.username, state.name
        text, code = english(state.detail), encoded(state.detail)
        if account.status != state.status or account.status_detail != text or account.status_code != code:
            if account.status != state.status:
                changes.append((account_id, account.status, state.status))
                new_events.append(_status_event(account_id, state.status, state.detail, "worker", state.at))
            account.status = state.status
            account.status_detail, account.status_code = text, code
        account.status_changed_at = state.at
        account.flood_wait_until = state.until
    record_events(session, new_events)
    return changes


# One account as the scan compares it: (id, worker id, desired state, status, status changed at, has a session).
# Plain tuples, and the time as the driver returns it (naive UTC; a string on SQLite), converted only where
# it is needed (`naive_utc_to_epoch`), because a scan reads the whole fleet.
AccountRecord = tuple[int, "int | None", str, str, "datetime | str | None", bool]


_ACCOUNT_RECORDS_SQL = (
    "SELECT id, worker_id, desired_state, status, status_changed_at, session_enc IS NOT NULL FROM accounts"
)


def account_records(session: Session) -> Sequence[AccountRecord]:
    """Every account, in one statement (the whole fleet: the scan is level-triggered).

    Read through the driver's own cursor in the session's transaction: SQLAlchemy's row objects would
    cost more than the query itself for 100,000 rows.
    """
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(_ACCOUNT_RECORDS_SQL)
        return cursor.fetchall()  # type: ignore[no-any-return]
    finally:
        cursor.close()


def naive_utc_to_epoch(moment: datetime | str | None) -> float | None:
    """Epoch seconds of a naive UTC time as stored (see `UTCDateTime`)."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return (moment.replace(tzinfo=None) - _EPOCH).total_seconds()


_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class StatusCorrection:
    """A recorded status that live state contradicts, with the time the contradicting report was made."""

    account_id: int
    status: str
    detail: Detail | None
    at: datetime
    until: datetime | None = None


_STATUS_UPDATE = (
    update(Account.__table__)
    .where(Account.__table__.c.id == bindparam("account_id"))
    .values(
        status=bindparam("new_status"),
        status_detail=bindparam("new_detail"),
        status_code=bindparam("new_code"),
        status_changed_at=bindparam("changed_at"),
        flood_wait_until=bindparam("until"),
    )
)

# PostgreSQL: every correction in one statement, the rows passed as one JSON document (a fixed statement
# whatever their number; an executemany is a statement per row on the server, and arrays of text cost more to
# build than JSON).
_STATUS_UPDATE_FROM_JSON = sql_text(
    "UPDATE accounts SET status = v.status, status_detail = v.detail, status_code = v.code,"
    " status_changed_at = v.changed_at, flood_wait_until = v.until"
    " FROM json_to_recordset(CAST(:rows AS json))"
    " AS v(id integer, status varchar, detail text, code text, changed_at timestamp, until timestamp)"
    " WHERE accounts.id = v.id"
)
_ROWS_PER_UPDATE = 10_000


def _naive_utc(moment: datetime | None) -> str | None:
    """A time as the columns store it (`UTCDateTime`: naive UTC), in ISO form."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None).isoformat()


def correct_account_statuses(session: Session, corrections: list[StatusCorrection]) -> None:
    """Write the scan's corrections set-wise, and their events (one INSERT): on PostgreSQL one UPDATE ... FROM
    json_to_recordset per 10,000 rows, on SQLite one executemany (run in process: no round trip per row)."""
    if not corrections:
        return
    texts = [english(c.detail) for c in corrections]
    codes = [encoded(c.detail) for c in corrections]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        rows = [
            {
                "id": c.account_id,
                "status": c.status,
                "detail": detail_text,
                "code": code,
                "changed_at": _naive_utc(c.at),
                "until": _naive_utc(c.until),
            }
            for c, detail_text, code in zip(corrections, texts, codes, strict=True)
        ]
        for start in range(0, len(rows), _ROWS_PER_UPDATE):
            connection.execute(_STATUS_UPDATE_FROM_JSON, {"rows": json.dumps(rows[start : start + _ROWS_PER_UPDATE])})
    else:
        connection.execute(
            _STATUS_UPDATE,
            [
                {
                    "account_id": c.account_id,
                    "new_status": c.status,
                    "new_detail": detail_text,
                    "new_code": code,
                    "changed_at": c.at,
                    "until": c.until,
                }
                for c, detail_text, code in zip(corrections, texts, codes, strict=True)
            ],
        )
    record_events(
        session,
        [_status_event(c.account_id, c.status, c.detail, "backend", c.at) for c in corrections],
    )
