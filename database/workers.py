"""Worker rows: reading them (by name, by id, a page, the columns a scan compares), inserting the workers a
scan discovers, writing heartbeats, and the admin's add, remove and activate/deactivate (each recorded as an
event).

Functions take a `Session` and never commit: the caller's unit of work (`with sessions.begin():`) owns the
transaction. Batch functions issue one statement for many rows, so a scan of 10,000 workers costs a handful
of statements, not 10,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from common.details import detail
from common.sealing import fingerprint
from common.validation import MAX_ROW_ID
from database.errors import WorkerExists, WorkerHasAccounts, WorkerKeyNotPending, WorkerNotFound, WorkerStillOnline
from database.events import NewEvent, record_events
from database.models import Account, FleetEventKind, Worker, WorkerStatus


@dataclass(frozen=True)
class WorkerRow:
    """The columns a scan compares against live state."""

    id: int
    name: str
    status: str
    last_heartbeat: datetime | None
    address: str
    is_active: bool
    public_key: str | None = None  # pinned
    pending_key: str | None = None  # presented since, not trusted


# --- reads -------------------------------------------------------------------------------------------------


def worker_rows(session: Session) -> dict[str, WorkerRow]:
    result = session.execute(
        select(
            Worker.id,
            Worker.name,
            Worker.status,
            Worker.last_heartbeat,
            Worker.address,
            Worker.is_active,
            Worker.public_key,
            Worker.pending_key,
        )
    )
    return {
        row.name: WorkerRow(
            row.id,
            row.name,
            row.status,
            row.last_heartbeat,
            row.address,
            row.is_active,
            row.public_key,
            row.pending_key,
        )
        for row in result
    }


def list_workers(session: Session, active_only: bool = False) -> Sequence[Worker]:
    query = select(Worker).order_by(Worker.name)
    if active_only:
        query = query.where(Worker.is_active.is_(True))
    return session.scalars(query).all()


def count_workers(session: Session, active_only: bool = False) -> int:
    query = select(func.count(Worker.id))
    if active_only:
        query = query.where(Worker.is_active.is_(True))
    return int(session.scalar(query) or 0)


def workers_page(session: Session, offset: int, limit: int, active_only: bool = False) -> Sequence[Worker]:
    """One page of workers, by name."""
    query = select(Worker).order_by(Worker.name).offset(offset).limit(limit)
    if active_only:
        query = query.where(Worker.is_active.is_(True))
    return session.scalars(query).all()


def workers_by_ids(session: Session, worker_ids: list[int]) -> Sequence[Worker]:
    if not worker_ids:
        return []
    return session.scalars(select(Worker).where(Worker.id.in_(worker_ids))).all()


def worker_by_id(session: Session, worker_id: int) -> Worker:
    worker = session.get(Worker, worker_id) if 1 <= worker_id <= MAX_ROW_ID else None
    if worker is None:
        raise WorkerNotFound(f"#{worker_id}")
    return worker


def get_worker(session: Session, name: str) -> Worker:
    worker = session.scalar(select(Worker).where(Worker.name == name))
    if worker is None:
        raise WorkerNotFound(name)
    return worker


def find_worker(session: Session, name: str) -> Worker | None:
    return session.scalar(select(Worker).where(Worker.name == name))


# --- writes ------------------------------------------------------------------------------------------------


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


def apply_worker_keys(session: Session, rows: dict[str, WorkerRow], presented: dict[str, str]) -> set[str]:
    """Compare the key each registered worker presents now with the one pinned for its name: pin the first one
    seen (trust on first use), record a different one as pending (alerted once per key), clear a pending one
    when the pinned key is back. Returns the workers that present a key not trusted now (given no work)."""
    untrusted: set[str] = set()
    changes: list[tuple[int, dict[str, str | None]]] = []
    events: list[NewEvent] = []
    for name, key in presented.items():
        row = rows.get(name)
        if row is None or not key:  # not recorded yet (the next scan), or a worker from before keys
            continue
        if row.public_key is None:
            changes.append((row.id, {"public_key": key, "pending_key": None}))
            events.append(NewEvent(FleetEventKind.WORKER_KEY_PINNED, name, detail("key", fingerprint=fingerprint(key))))
        elif key == row.public_key:
            if row.pending_key is not None:
                changes.append((row.id, {"pending_key": None}))
        else:
            untrusted.add(name)
            if key != row.pending_key:
                changes.append((row.id, {"pending_key": key}))
                said = detail("key_changed", pinned=fingerprint(row.public_key), presented=fingerprint(key))
                events.append(NewEvent(FleetEventKind.WORKER_KEY_CHANGED, name, said))
    for worker_id, values in changes:
        session.execute(update(Worker).where(Worker.id == worker_id).values(**values))
    record_events(session, events)
    return untrusted


def trust_worker_key(session: Session, name: str, actor: str) -> str:
    """Pin the key the worker presented instead of its pinned one; returns its fingerprint. WorkerKeyNotPending
    when there is none to trust."""
    worker = get_worker(session, name)
    if worker.pending_key is None:
        raise WorkerKeyNotPending(name)
    worker.public_key, worker.pending_key = worker.pending_key, None
    said = detail("key", fingerprint=fingerprint(worker.public_key))
    record_events(session, [NewEvent(FleetEventKind.WORKER_KEY_TRUSTED, name, said, actor)])
    return fingerprint(worker.public_key)


def add_worker(session: Session, name: str, address: str, actor: str) -> Worker:
    if find_worker(session, name) is not None:
        raise WorkerExists(name)
    worker = Worker(name=name, address=address, is_active=True, status=WorkerStatus.OFFLINE.value)
    session.add(worker)
    session.flush()
    record_events(
        session,
        [
            NewEvent(
                FleetEventKind.WORKER_ADDED, name, detail("worker_address", address=address) if address else None, actor
            )
        ],
    )
    return worker


def remove_worker(session: Session, name: str, actor: str, is_online: bool) -> None:
    worker = get_worker(session, name)
    if is_online:
        raise WorkerStillOnline(name)
    assigned = session.scalar(select(func.count(Account.id)).where(Account.worker_id == worker.id)) or 0
    if assigned:
        raise WorkerHasAccounts(name, assigned)
    session.execute(delete(Worker).where(Worker.id == worker.id))
    record_events(session, [NewEvent(FleetEventKind.WORKER_REMOVED, name, None, actor)])


def set_worker_active(session: Session, name: str, active: bool, actor: str) -> bool:
    """Flip the admin switch; returns False when it already had that value (nothing recorded)."""
    worker = get_worker(session, name)
    if worker.is_active == active:
        return False
    worker.is_active = active
    kind = FleetEventKind.WORKER_ACTIVATED if active else FleetEventKind.WORKER_DEACTIVATED
    record_events(session, [NewEvent(kind, name, None, actor)])
    return True
