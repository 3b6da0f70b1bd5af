"""Queries and writes on the fleet's tables: the only module that writes to the database.

Functions take a `Session` and never commit: the caller's unit of work (`with sessions.begin():`) owns the
transaction. Batch functions issue one statement for many rows, so a scan of 10,000 workers costs a handful
of statements, not 10,000.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import bindparam, case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from common.details import Detail, detail, encoded, english
from common.devices import DeviceIdentity, choose_identity
from common.errors import FleetError
from common.validation import MAX_ROW_ID, validation_message
from database.models import Account, DesiredState, FleetEvent, FleetEventKind, Worker, WorkerStatus, utcnow

log = logging.getLogger(__name__)


class WorkerNotFound(FleetError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} not found", "worker_not_found", name=name)
        self.name = name


class WorkerExists(FleetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} already exists", "worker_exists", name=name)
        self.name = name


class WorkerStillOnline(FleetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} is online; stop it before removing it", "worker_still_online", name=name)
        self.name = name


class WorkerHasAccounts(FleetError):
    def __init__(self, name: str, count: int) -> None:
        super().__init__(
            f"worker {name!r} still has {count} account(s); move or remove them first",
            "worker_has_accounts",
            name=name,
            count=count,
        )
        self.name = name


class AccountNotFound(FleetError, LookupError):
    def __init__(self, account_id: int | str) -> None:
        super().__init__(f"account {account_id} not found", "account_not_found", id=account_id)
        self.account_id = account_id


class AccountExists(FleetError):
    def __init__(self, masked_phone: str, account_id: int) -> None:
        super().__init__(
            f"an account with phone {masked_phone} already exists (id {account_id})",
            "account_exists",
            id=account_id,
            phone=masked_phone,
        )
        self.account_id = account_id


@dataclass(frozen=True)
class WorkerRow:
    """The columns a scan compares against live state."""

    id: int
    name: str
    status: str
    last_heartbeat: datetime | None
    address: str
    is_active: bool


@dataclass(frozen=True)
class NewEvent:
    kind: str
    subject: str
    detail: Detail | None = None
    actor: str = "backend"
    at: datetime | None = None


def epoch_to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- reads -------------------------------------------------------------------------------------------------


def worker_rows(session: Session) -> dict[str, WorkerRow]:
    result = session.execute(
        select(Worker.id, Worker.name, Worker.status, Worker.last_heartbeat, Worker.address, Worker.is_active)
    )
    return {
        row.name: WorkerRow(row.id, row.name, row.status, row.last_heartbeat, row.address, row.is_active)
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


# The same transition repeated within this window is folded into one row (see `FleetEvent`).
FOLD_WINDOW = timedelta(hours=1)
_SUBJECTS_PER_QUERY = 500


def _fold_key(kind: str, subject: str, detail: str, actor: str) -> tuple[str, str, str, str]:
    """Events that differ only in numbers ("retry 3 in 8 s", "no heartbeat for 61 s") are the same transition."""
    return kind, subject, re.sub(r"[0-9]+", "#", detail), actor


def _status_event(account_id: int, status: str, said: Detail | None, actor: str, at: datetime) -> NewEvent:
    """An account's new status as a line of the fleet's history ("banned: <why>")."""
    cause = (
        detail("status_change", status=status, cause=said) if said is not None else detail("status_is", status=status)
    )
    return NewEvent(FleetEventKind.ACCOUNT_STATUS, account_subject(account_id), cause, actor, at)


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
    earlier: dict[tuple[str, str, str, str], tuple[int, datetime, datetime, int]] = {}
    for start in range(0, len(subjects), _SUBJECTS_PER_QUERY):
        rows = session.execute(
            select(
                FleetEvent.id,
                FleetEvent.kind,
                FleetEvent.subject,
                FleetEvent.detail,
                FleetEvent.actor,
                FleetEvent.created_at,
                FleetEvent.last_at,
                FleetEvent.repeat_count,
            )
            .where(FleetEvent.subject.in_(subjects[start : start + _SUBJECTS_PER_QUERY]), FleetEvent.last_at >= since)
            .order_by(FleetEvent.id)
        )
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
    if replaced:
        session.execute(
            delete(FleetEvent).where(FleetEvent.id.in_(replaced)), execution_options={"synchronize_session": False}
        )
    session.execute(insert(FleetEvent), new_rows)


def prune_events(session: Session, older_than: datetime, limit: int = 5000) -> int:
    """Delete up to `limit` events whose latest occurrence is older than `older_than`; returns how many."""
    oldest = select(FleetEvent.id).where(FleetEvent.last_at < older_than).order_by(FleetEvent.id).limit(limit)
    result = session.execute(
        delete(FleetEvent).where(FleetEvent.id.in_(oldest)), execution_options={"synchronize_session": False}
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


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


# --- accounts ----------------------------------------------------------------------------------------------


def account_subject(account_id: int) -> str:
    return f"account:{account_id}"


def account_counts(session: Session, worker_ids: list[int] | None = None) -> dict[int, tuple[int, int]]:
    """worker id -> (running, total) accounts, in one statement (for some workers, or all)."""
    running = func.sum(case((Account.status == "running", 1), else_=0))
    query = select(Account.worker_id, running, func.count(Account.id)).where(Account.worker_id.is_not(None))
    if worker_ids is not None:
        query = query.where(Account.worker_id.in_(worker_ids))
    rows = session.execute(query.group_by(Account.worker_id))
    return {worker_id: (int(run or 0), int(total)) for worker_id, run, total in rows}


def get_account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id) if 1 <= account_id <= MAX_ROW_ID else None
    if account is None:
        raise AccountNotFound(account_id)
    return account


def find_account_by_phone(session: Session, phone_lookups: str | list[str]) -> Account | None:
    """The account whose phone number has this keyed hash (`SecretBox.lookups`: any key while keys rotate)."""
    candidates = [phone_lookups] if isinstance(phone_lookups, str) else phone_lookups
    return session.scalar(select(Account).where(Account.phone_lookup.in_(candidates)).limit(1))


def list_accounts(
    session: Session, worker_id: int | None = None, status: str | None = None, offset: int = 0, limit: int | None = None
) -> Sequence[Account]:
    query = select(Account).order_by(Account.id)
    if worker_id is not None:
        query = query.where(Account.worker_id == worker_id)
    if status is not None:
        query = query.where(Account.status == status)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return session.scalars(query).all()


def accounts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Account.status, func.count(Account.id)).group_by(Account.status))
    return {status: int(count) for status, count in rows}


def count_accounts(session: Session, worker_id: int | None = None, status: str | None = None) -> int:
    query = select(func.count(Account.id))
    if worker_id is not None:
        query = query.where(Account.worker_id == worker_id)
    if status is not None:
        query = query.where(Account.status == status)
    return int(session.scalar(query) or 0)


def device_of(account: Account) -> DeviceIdentity:
    """The device identity the account presents to Telegram. One edited by hand into something a worker would
    refuse gives way (with a warning) to the one chosen for the account, so the account can still start."""
    try:
        return DeviceIdentity(
            device_model=account.device_model,
            system_version=account.device_system_version,
            app_version=account.device_app_version,
            lang_code=account.device_lang_code,
            system_lang_code=account.device_system_lang_code,
            lang_pack=account.device_lang_pack or "",
        )
    except ValidationError as error:
        log.warning("account %s: its stored device identity is unusable (%s)", account.id, validation_message(error))
        return choose_identity(account.phone_lookup or "")


def set_device(account: Account, device: DeviceIdentity) -> None:
    account.device_model = device.device_model
    account.device_system_version = device.system_version
    account.device_app_version = device.app_version
    account.device_lang_code = device.lang_code
    account.device_system_lang_code = device.system_lang_code
    account.device_lang_pack = device.lang_pack


def create_account(session: Session, account: Account, kind: FleetEventKind, said: Detail, actor: str) -> Account:
    session.add(account)
    session.flush()
    record_events(session, [NewEvent(kind, account_subject(account.id), said, actor)])
    return account


def set_desired_state(session: Session, account: Account, desired: DesiredState, actor: str) -> None:
    account.desired_state = desired.value
    kind = (
        FleetEventKind.ACCOUNT_START_REQUESTED
        if desired is DesiredState.RUNNING
        else FleetEventKind.ACCOUNT_STOP_REQUESTED
    )
    record_events(session, [NewEvent(kind, account_subject(account.id), None, actor)])


def assign_worker(session: Session, account: Account, worker: Worker, actor: str, previous: str | None) -> None:
    account.worker_id = worker.id
    moved = detail("moved", before=previous or "-", after=worker.name)
    record_events(session, [NewEvent(FleetEventKind.ACCOUNT_MOVED, account_subject(account.id), moved, actor)])


def delete_account(session: Session, account: Account, actor: str) -> None:
    subject = account_subject(account.id)
    session.delete(account)
    record_events(session, [NewEvent(FleetEventKind.ACCOUNT_REMOVED, subject, detail("secrets_wiped"), actor)])


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


def correct_account_statuses(session: Session, corrections: list[StatusCorrection]) -> None:
    """Write the scan's corrections (one executemany statement) and their events."""
    if not corrections:
        return
    session.connection().execute(
        _STATUS_UPDATE,
        [
            {
                "account_id": c.account_id,
                "new_status": c.status,
                "new_detail": english(c.detail),
                "new_code": encoded(c.detail),
                "changed_at": c.at,
                "until": c.until,
            }
            for c in corrections
        ],
    )
    record_events(
        session,
        [_status_event(c.account_id, c.status, c.detail, "backend", c.at) for c in corrections],
    )
