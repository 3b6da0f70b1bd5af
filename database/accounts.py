"""Account rows: finding and counting them, the admin's writes (create, desired state, assigned worker,
delete — each recorded as an event), and the device identity an account presents to Telegram.

Functions take a `Session` and never commit: the caller's unit of work (`with sessions.begin():`) owns the
transaction. What the scan records about accounts' statuses is in `database.account_status`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Row, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from common.details import Detail, detail
from common.devices import DeviceIdentity, choose_identity
from common.validation import MAX_ROW_ID, validation_message
from database.errors import AccountNotFound
from database.events import NewEvent, account_subject, record_events
from database.models import Account, DesiredState, FleetEventKind, Worker

log = logging.getLogger(__name__)


# --- reads -------------------------------------------------------------------------------------------------


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


_ACCOUNTS = Account.__table__
_WORKERS = Worker.__table__
# The columns of an account's spec (`backend.account_base.account_spec`), read in Core where starts are on a
# timed path (no ORM objects): one start (`bench/dispatch.py`), a scan's many (`bench/reconcile.py`).
_SPEC_COLUMNS = tuple(
    _ACCOUNTS.c[name]
    for name in (
        "id",
        "phone_enc",
        "phone_lookup",
        "api_id",
        "api_hash_enc",
        "session_enc",
        "proxy_enc",
        "proxy_id",
        "device_model",
        "device_system_version",
        "device_app_version",
        "device_lang_code",
        "device_system_lang_code",
        "device_lang_pack",
    )
)
# A start also reads the desired state, and the name and admin switch of the account's worker.
_FOR_START = (
    select(
        *_SPEC_COLUMNS,
        _ACCOUNTS.c.desired_state,
        _ACCOUNTS.c.worker_id,
        _WORKERS.c.name.label("worker_name"),
        _WORKERS.c.is_active.label("worker_active"),
        _WORKERS.c.pending_key.label("worker_key_pending"),
    )
    .select_from(_ACCOUNTS.outerjoin(_WORKERS, _ACCOUNTS.c.worker_id == _WORKERS.c.id))
    .where(_ACCOUNTS.c.id == bindparam("id"))
)
_SPECS_OF = select(*_SPEC_COLUMNS).where(_ACCOUNTS.c.id.in_(bindparam("ids", expanding=True)))
_IDS_PER_QUERY = 1000


def spec_rows(session: Session, ids: list[int]) -> dict[int, Row[Any]]:
    """The spec columns of these accounts (those that exist), by id, a statement per 1,000."""
    connection = session.connection()
    found: dict[int, Row[Any]] = {}
    for start in range(0, len(ids), _IDS_PER_QUERY):
        for row in connection.execute(_SPECS_OF, {"ids": ids[start : start + _IDS_PER_QUERY]}):
            found[row.id] = row
    return found


def accounts_workers(session: Session, ids: list[int]) -> dict[int, str]:
    """account id -> the name of the worker it is given to (accounts on no worker are left out)."""
    found: dict[int, str] = {}
    for start in range(0, len(ids), _IDS_PER_QUERY):
        query = (
            select(Account.id, Worker.name)
            .join(Worker, Worker.id == Account.worker_id)
            .where(Account.id.in_(ids[start : start + _IDS_PER_QUERY]))
        )
        found.update({account_id: name for account_id, name in session.execute(query)})
    return found


def account_for_start(session: Session, account_id: int) -> Row[Any]:
    """The account as a start needs it, with its worker's `worker_name` and `worker_active` (None if it has none)."""
    found = (
        session.connection().execute(_FOR_START, {"id": account_id}).first() if 1 <= account_id <= MAX_ROW_ID else None
    )
    if found is None:
        raise AccountNotFound(account_id)
    return found


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


# --- device identity ---------------------------------------------------------------------------------------


def device_of(account: Account | Row[Any]) -> DeviceIdentity:
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


# --- writes ------------------------------------------------------------------------------------------------


def create_account(session: Session, account: Account, kind: FleetEventKind, said: Detail, actor: str) -> Account:
    session.add(account)
    session.flush()
    record_events(session, [NewEvent(kind, account_subject(account.id), said, actor)])
    return account


def set_desired_state(session: Session, account: Account, desired: DesiredState, actor: str) -> None:
    account.desired_state = desired.value
    _record_desired(session, account.id, desired, actor)


def _record_desired(session: Session, account_id: int, desired: DesiredState, actor: str) -> None:
    kind = (
        FleetEventKind.ACCOUNT_START_REQUESTED
        if desired is DesiredState.RUNNING
        else FleetEventKind.ACCOUNT_STOP_REQUESTED
    )
    record_events(session, [NewEvent(kind, account_subject(account_id), None, actor)])


_SET_DESIRED = (
    update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("account_id")).values(desired_state=bindparam("desired"))
)


def request_desired_state(session: Session, account_id: int, recorded: str, desired: DesiredState, actor: str) -> None:
    """`set_desired_state` for an account read as a row (`account_for_start`): the UPDATE if it changes (as the
    ORM would), the event always."""
    if recorded != desired.value:
        session.connection().execute(_SET_DESIRED, {"account_id": account_id, "desired": desired.value})
    _record_desired(session, account_id, desired, actor)


def assign_worker(session: Session, account: Account, worker: Worker, actor: str, previous: str | None) -> None:
    account.worker_id = worker.id
    moved = detail("moved", before=previous or "-", after=worker.name)
    record_events(session, [NewEvent(FleetEventKind.ACCOUNT_MOVED, account_subject(account.id), moved, actor)])


def delete_account(session: Session, account: Account, actor: str) -> None:
    subject = account_subject(account.id)
    session.delete(account)
    record_events(session, [NewEvent(FleetEventKind.ACCOUNT_REMOVED, subject, detail("secrets_wiped"), actor)])
