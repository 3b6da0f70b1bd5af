"""Queries and writes on the fleet's tables: the only module that writes to the database.

Functions take a `Session` and never commit: the caller's unit of work (`with sessions.begin():`) owns the
transaction. Batch functions issue one statement for many rows, so a scan of 10,000 workers costs a handful
of statements, not 10,000.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from database.models import FleetEvent, FleetEventKind, Worker, WorkerStatus, utcnow


class WorkerNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} not found")
        self.name = name


class WorkerExists(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} already exists")
        self.name = name


class WorkerStillOnline(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} is online; stop it before removing it")
        self.name = name


@dataclass(frozen=True)
class WorkerRow:
    """The columns a scan compares against live state."""

    id: int
    name: str
    status: str
    last_heartbeat: datetime | None
    address: str


@dataclass(frozen=True)
class NewEvent:
    kind: str
    subject: str
    detail: str = ""
    actor: str = "backend"
    at: datetime | None = None


def epoch_to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- reads -------------------------------------------------------------------------------------------------


def worker_rows(session: Session) -> dict[str, WorkerRow]:
    result = session.execute(select(Worker.id, Worker.name, Worker.status, Worker.last_heartbeat, Worker.address))
    return {row.name: WorkerRow(row.id, row.name, row.status, row.last_heartbeat, row.address) for row in result}


def list_workers(session: Session, active_only: bool = False) -> Sequence[Worker]:
    query = select(Worker).order_by(Worker.name)
    if active_only:
        query = query.where(Worker.is_active.is_(True))
    return session.scalars(query).all()


def get_worker(session: Session, name: str) -> Worker:
    worker = session.scalar(select(Worker).where(Worker.name == name))
    if worker is None:
        raise WorkerNotFound(name)
    return worker


def find_worker(session: Session, name: str) -> Worker | None:
    return session.scalar(select(Worker).where(Worker.name == name))


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


def record_events(session: Session, events: Iterable[NewEvent]) -> None:
    rows = [
        {
            "kind": event.kind,
            "subject": event.subject,
            "detail": event.detail,
            "actor": event.actor,
            "created_at": event.at or utcnow(),
        }
        for event in events
    ]
    if rows:
        session.execute(insert(FleetEvent), rows)


def insert_discovered_workers(session: Session, workers: list[dict[str, object]]) -> None:
    """Insert workers first seen in Redis (dicts of Worker columns), in one statement."""
    if workers:
        session.execute(insert(Worker), workers)


_HEARTBEAT_UPDATE = (
    update(Worker.__table__)
    .where(Worker.__table__.c.id == bindparam("worker_id"))
    .values(status=bindparam("new_status"), last_heartbeat=bindparam("new_heartbeat"))
)


def update_heartbeats(session: Session, changes: list[tuple[int, str, datetime | None]]) -> None:
    """Set (status, last_heartbeat) of many workers by id, as one executemany statement."""
    if changes:
        session.connection().execute(
            _HEARTBEAT_UPDATE,
            [{"worker_id": wid, "new_status": status, "new_heartbeat": beat} for wid, status, beat in changes],
        )


def set_status(session: Session, ids: list[int], status: WorkerStatus) -> None:
    if ids:
        session.execute(update(Worker).where(Worker.id.in_(ids)).values(status=status.value))


def add_worker(session: Session, name: str, address: str, actor: str) -> Worker:
    if find_worker(session, name) is not None:
        raise WorkerExists(name)
    worker = Worker(name=name, address=address, is_active=True, status=WorkerStatus.OFFLINE.value)
    session.add(worker)
    session.flush()
    record_events(
        session, [NewEvent(FleetEventKind.WORKER_ADDED, name, f"address {address}" if address else "", actor)]
    )
    return worker


def remove_worker(session: Session, name: str, actor: str, is_online: bool) -> None:
    worker = get_worker(session, name)
    if is_online:
        raise WorkerStillOnline(name)
    session.execute(delete(Worker).where(Worker.id == worker.id))
    record_events(session, [NewEvent(FleetEventKind.WORKER_REMOVED, name, "", actor)])


def set_worker_active(session: Session, name: str, active: bool, actor: str) -> bool:
    """Flip the admin switch; returns False when it already had that value (nothing recorded)."""
    worker = get_worker(session, name)
    if worker.is_active == active:
        return False
    worker.is_active = active
    kind = FleetEventKind.WORKER_ACTIVATED if active else FleetEventKind.WORKER_DEACTIVATED
    record_events(session, [NewEvent(kind, name, "", actor)])
    return True
