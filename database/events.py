"""The fleet's history (`FleetEvent`): appending events (a repeated transition folds into one row), pruning
old ones, and reading them back (an account's or worker's latest, or every event after a known id).

Functions take a `Session` and never commit: the caller's unit of work (`with sessions.begin():`) owns the
transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from common.details import Detail, encoded, english
from database.models import FleetEvent, utcnow

# The same transition repeated within this window is folded into one row (see `FleetEvent`).
FOLD_WINDOW = timedelta(hours=1)
# Bound parameters per statement, well under SQLite's limit (32,766) and PostgreSQL's (65,535): a scan that
# corrects a whole fleet records 100,000 events in one call.
_IDS_PER_STATEMENT = 5000
_EVENTS = FleetEvent.__table__
# Statements built once (a start request records one event: building and hashing them each time cost more
# than running them).
_FOLDABLE = (
    select(
        _EVENTS.c.id,
        _EVENTS.c.kind,
        _EVENTS.c.subject,
        _EVENTS.c.detail,
        _EVENTS.c.actor,
        _EVENTS.c.created_at,
        _EVENTS.c.last_at,
        _EVENTS.c.repeat_count,
    )
    .where(_EVENTS.c.subject.in_(bindparam("subjects", expanding=True)), _EVENTS.c.last_at >= bindparam("since"))
    .order_by(_EVENTS.c.id)
)
_DELETE_EVENTS = delete(_EVENTS).where(_EVENTS.c.id.in_(bindparam("ids", expanding=True)))
_INSERT_EVENTS = insert(_EVENTS)


@dataclass(frozen=True)
class NewEvent:
    kind: str
    subject: str
    detail: Detail | None = None
    actor: str = "backend"
    at: datetime | None = None


def account_subject(account_id: int) -> str:
    """The subject an account's events are recorded under (a worker's is its name)."""
    return f"account:{account_id}"


# --- reads -------------------------------------------------------------------------------------------------


def recent_events(session: Session, subject: str | None = None, limit: int = 20) -> Sequence[FleetEvent]:
    query = select(FleetEvent).order_by(FleetEvent.id.desc()).limit(limit)
    if subject is not None:
        query = query.where(FleetEvent.subject == subject)
    return session.scalars(query).all()


def events_after(session: Session, last_id: int, limit: int = 500) -> Sequence[FleetEvent]:
    return session.scalars(select(FleetEvent).where(FleetEvent.id > last_id).order_by(FleetEvent.id).limit(limit)).all()


def last_event_id(session: Session) -> int:
    return session.scalar(select(func.max(FleetEvent.id))) or 0


# --- writes ------------------------------------------------------------------------------------------------


def _fold_key(kind: str, subject: str, detail: str, actor: str) -> tuple[str, str, str, str]:
    """Events that differ only in numbers ("retry 3 in 8 s", "no heartbeat for 61 s") are the same transition."""
    return kind, subject, re.sub(r"[0-9]+", "#", detail), actor


def record_events(session: Session, events: Iterable[NewEvent]) -> None:
    """Append events, folding each into an identical one of the same subject from the last FOLD_WINDOW.

    A folded event replaces its earlier row (deleted) with one at the end of the log carrying the count, the
    first time and the latest time: the table grows with distinct transitions, not with repetitions.
    """
    batch = list(events)
    if not batch:
        return
    now = utcnow()
    times = [event.at or now for event in batch]
    since = min(times) - FOLD_WINDOW
    subjects = sorted({event.subject for event in batch})
    connection = session.connection()  # Core statements: events are never ORM objects of the session
    earlier: dict[tuple[str, str, str, str], tuple[int, datetime, datetime, int]] = {}
    for start in range(0, len(subjects), _IDS_PER_STATEMENT):
        rows = connection.execute(_FOLDABLE, {"subjects": subjects[start : start + _IDS_PER_STATEMENT], "since": since})
        for row in rows:
            earlier[_fold_key(row.kind, row.subject, row.detail, row.actor)] = (
                row.id,
                row.created_at,
                row.last_at,
                row.repeat_count,
            )
    replaced: list[int] = []
    new_rows: list[dict[str, object]] = []
    position: dict[tuple[str, str, str, str], int] = {}
    for event, at in zip(batch, times, strict=True):
        text = english(event.detail)
        key = _fold_key(event.kind, event.subject, text, event.actor)
        if key in position:  # repeated within this batch
            row = new_rows[position[key]]
            row["repeat_count"] = int(row["repeat_count"]) + 1  # type: ignore[call-overload]
            row["detail"], row["detail_code"] = text, encoded(event.detail)
            row["last_at"] = max(at, row["last_at"])  # type: ignore[type-var]
            continue
        first, count = at, 1
        previous = earlier.get(key)
        if previous is not None and previous[2] >= at - FOLD_WINDOW:
            replaced.append(previous[0])
            first, count = min(previous[1], at), previous[3] + 1
        position[key] = len(new_rows)
        new_rows.append(
            {
                "kind": event.kind,
                "subject": event.subject,
                "detail": text,
                "detail_code": encoded(event.detail),
                "actor": event.actor,
                "created_at": first,
                "last_at": at,
                "repeat_count": count,
            }
        )
    for start in range(0, len(replaced), _IDS_PER_STATEMENT):
        connection.execute(_DELETE_EVENTS, {"ids": replaced[start : start + _IDS_PER_STATEMENT]})
    connection.execute(_INSERT_EVENTS, new_rows)


def prune_events(session: Session, older_than: datetime, limit: int = 5000) -> int:
    """Delete up to `limit` events whose latest occurrence is older than `older_than`; returns how many."""
    oldest = select(FleetEvent.id).where(FleetEvent.last_at < older_than).order_by(FleetEvent.id).limit(limit)
    result = session.execute(
        delete(FleetEvent).where(FleetEvent.id.in_(oldest)), execution_options={"synchronize_session": False}
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
