"""Account operations across the fleet: ask for them, follow them, record how they ended.

`submit` records one row per account (a batch), then sends each worker one message with its accounts'
operations. Workers write where each operation stands into Redis (`keys.operation`); `progress` reads that
and records final outcomes in the database, and so does every backend scan (`reconcile`), which also sends
again the operations whose worker went away — to the worker the account runs on now — or, once the account
runs nowhere, ends them as "worker lost". A resend is claimed with a compare-and-set on the row, so two
readers never send one operation twice. What is shown of an operation (its view, what its worker wrote) is
`backend.operation_views`.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.account_base import account_spec
from backend.account_password import keep_new_password, with_stored_password
from backend.accounts_service import AccountService
from backend.dispatch import TaskDispatcher
from backend.errors import AccountError
from backend.operation_views import Batch, LiveOperation, OperationView, operation_views, read_live
from celery_app import keys, presence
from celery_app.contract import (
    COMMAND_EXPIRES_SECONDS,
    MAX_BATCH,
    OPERATION_PARAMS,
    PHOTO_MAX_BYTES,
    OperateMany,
    OperationRequest,
    Payload,
    TaskName,
    validation_message,
)
from celery_app.operations import (
    FINAL_STATUSES,
    OperationName,
    OperationStatus,
    describe_result,
    got_worse,
    image_kind,
    verdict_of,
)
from celery_app.presence import Liveness, liveness
from common.details import Detail, detail, encoded, english, free
from database.audit import audited, named
from database.events import NewEvent, account_subject, record_events
from database.models import Account, AccountOperation, FleetEventKind, Worker, utcnow
from database.workers import list_workers

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # sends of one operation (the first and two after its worker went away)
UNCLAIMED_AFTER = COMMAND_EXPIRES_SECONDS + 30  # sent, never picked up: the message expired unseen
LOST_AFTER = 180.0  # its worker silent this long and the account runs nowhere else: "worker lost"
_OPEN = [status.value for status in OperationStatus if status not in FINAL_STATUSES]
_FINAL = frozenset(status.value for status in FINAL_STATUSES)


class OperationsService:
    def __init__(
        self,
        redis: Redis,
        sessions: sessionmaker[Session],
        dispatcher: TaskDispatcher,
        offline_after: float,
        accounts: AccountService | None = None,
        lost_after: float = LOST_AFTER,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.offline_after = offline_after
        self._accounts = accounts  # choosing accounts by live status and encrypting passwords need it
        self.lost_after = lost_after

    @classmethod
    def over(cls, accounts: AccountService) -> OperationsService:
        """For a front end (CLI, bot): on the accounts service's own connections."""
        return cls(accounts.redis, accounts.sessions, accounts.dispatcher, accounts.offline_after, accounts)

    @property
    def accounts(self) -> AccountService:
        if self._accounts is None:
            raise RuntimeError("this operations service cannot choose accounts or build parameters")
        return self._accounts

    # --- choosing accounts and parameters

    def select(
        self, account_ids: Iterable[int] = (), worker: str | None = None, status: str | None = None
    ) -> list[int]:
        """The accounts an operation is for: the ids given, else a worker's, else all; optionally only those
        whose live status is `status`. Unknown ids are refused with a clear message."""
        ids = sorted(set(account_ids))
        if ids:
            with self.sessions() as session:
                known = set(session.scalars(select(Account.id).where(Account.id.in_(ids))))
            missing = [str(i) for i in ids if i not in known]
            if missing:
                listed = ", ".join(missing)
                raise AccountError(f"no account with id {listed}", "accounts_not_found", ids=listed)
            if status is None:
                return ids
        views = self.accounts.list_accounts(worker=worker, status=status)
        chosen = [view.id for view in views]
        wanted = set(ids)
        return [i for i in chosen if i in wanted] if ids else chosen

    def build_params(self, name: OperationName, options: dict[str, Any]) -> dict[str, Any]:
        """The wire parameters from what the operator gave (clear passwords are encrypted here; a photo is
        checked to be an image). Bad input raises AccountError and nothing is recorded."""
        given = {key: value for key, value in options.items() if value is not None}
        wire: dict[str, Any] = {}
        if name is OperationName.TWO_FA:
            box = self.accounts.box
            if given.get("new_password") is not None and not str(given["new_password"]):
                raise AccountError("the new 2FA password must not be empty", "password_empty")
            if given.get("current_password"):
                wire["current_password_enc"] = box.encrypt(str(given["current_password"]))
            if given.get("new_password"):
                wire["new_password_enc"] = box.encrypt(str(given["new_password"]))
            if given.get("hint"):
                wire["hint"] = str(given["hint"])
        elif name is OperationName.PROFILE:
            for key in ("first_name", "last_name", "bio", "username"):
                if key in given:
                    wire[key] = str(given[key]).removeprefix("@") if key == "username" else str(given[key])
            photo = given.get("photo")
            if photo is not None:
                data = bytes(photo)
                if len(data) > PHOTO_MAX_BYTES:
                    megabytes = PHOTO_MAX_BYTES // (1024 * 1024)
                    raise AccountError(f"the photo is larger than {megabytes} MB", "photo_too_big", mb=megabytes)
                if image_kind(data) is None:
                    raise AccountError("the photo is not a JPEG or PNG image", "photo_invalid")
                wire["photo_b64"] = base64.b64encode(data).decode()
            if not wire:
                raise AccountError(
                    "nothing to change: give a first name, last name, bio, username or photo", "nothing_to_change"
                )
        elif given:
            raise AccountError(f"the {name.value} operation takes no options", "no_options", operation=name.value)
        try:
            OPERATION_PARAMS[name].model_validate(wire)
        except ValidationError as error:
            problems = _readable(validation_message(error))
            raise AccountError(f"invalid options: {problems}", "invalid_params", problems=problems) from None
        return wire

    @staticmethod
    def operation_name(value: str) -> OperationName:
        try:
            return OperationName(value)
        except ValueError:
            choices = ", ".join(name.value for name in OperationName)
            raise AccountError(
                f"unknown operation {value!r}; choose one of: {choices}", "unknown_operation", name=value, known=choices
            ) from None

    # --- asking

    @audited(lambda a: f"operation.{a['name']}", named(("account", "account_ids")), params=("options",))
    def submit(self, name: OperationName, account_ids: list[int], options: dict[str, Any], actor: str) -> Batch:
        """Record and send `name` for each account; one that cannot run it now (no session, no worker, a
        deactivated or offline worker) is recorded as failed with the reason, so the batch shows every one."""
        if not account_ids:
            raise AccountError("no accounts match", "no_accounts")
        params = self.build_params(name, options)
        batch = uuid.uuid4().hex
        outgoing: dict[str, list[OperationRequest]] = {}
        now = utcnow()
        with self.sessions.begin() as session:
            accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(account_ids)))}
            workers = {w.id: w for w in list_workers(session)}
            online = self._online({w.name for w in workers.values()})
            rows: list[AccountOperation] = []
            for account_id in account_ids:
                account = accounts.get(account_id)
                if account is None:
                    continue
                worker = workers.get(account.worker_id) if account.worker_id is not None else None
                refusal = _refusal(account, worker, online)
                row = AccountOperation(
                    batch=batch,
                    account_id=account_id,
                    name=name.value,
                    params=json.dumps(params, separators=(",", ":")),
                    status=OperationStatus.FAILED.value if refusal else OperationStatus.QUEUED.value,
                    result="",
                    error=english(refusal),
                    error_code=encoded(refusal),
                    worker=worker.name if worker else None,
                    attempts=0 if refusal else 1,
                    actor=actor[:64],
                    created_at=now,
                    sent_at=None if refusal else now,
                    finished_at=now if refusal else None,
                )
                session.add(row)
                rows.append(row)
            session.flush()
            for row in rows:
                if row.status == OperationStatus.QUEUED.value and row.worker:
                    held = accounts[row.account_id]
                    request = OperationRequest(
                        operation_id=row.id,
                        name=name,
                        params=with_stored_password(name, params, held),
                        spec=account_spec(held),
                    )
                    outgoing.setdefault(row.worker, []).append(request)
            record_events(
                session,
                [
                    NewEvent(
                        FleetEventKind.OPERATION_FINISHED,
                        account_subject(r.account_id),
                        detail("operation_failed", operation=name.value, cause=said),
                    )
                    for r in rows
                    if (said := Detail.decode(r.error_code)) is not None
                ],
            )
        self._send(outgoing)
        return Batch(batch, self.progress(batch))

    def _online(self, names: set[str]) -> set[str]:
        snapshot = presence.read_heartbeats(self.redis, sorted(names))
        return {
            name
            for name, beat in snapshot.beats.items()
            if liveness(beat, snapshot.now, self.offline_after) is Liveness.ONLINE
        }

    def _send(self, outgoing: dict[str, list[OperationRequest]]) -> None:
        messages: list[tuple[str, TaskName, Payload]] = []
        for worker, requests in outgoing.items():
            for start in range(0, len(requests), MAX_BATCH):
                messages.append((worker, TaskName.OPERATE, OperateMany(requests=requests[start : start + MAX_BATCH])))
        self.dispatcher.send_many(messages)

    # --- following

    def progress(self, batch: str) -> list[OperationView]:
        """Where each operation of the batch stands now; final outcomes are recorded as they are seen."""
        with self.sessions.begin() as session:
            rows = list(session.scalars(select(AccountOperation).where(AccountOperation.batch == batch)))
            live = read_live(self.redis, _sent_to(r for r in rows if r.status in _OPEN))
            self._record(session, rows, live)
            return operation_views(session, rows, live)

    def record(self, operation_ids: list[int]) -> None:
        """Record the outcomes of these operations now (their workers said they finished: the event path)."""
        with self.sessions.begin() as session:
            rows = list(session.scalars(select(AccountOperation).where(AccountOperation.id.in_(operation_ids))))
            self._record(session, rows, read_live(self.redis, _sent_to(r for r in rows if r.status in _OPEN)))

    def recent(self, account_id: int, limit: int = 5) -> list[OperationView]:
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(AccountOperation)
                    .where(AccountOperation.account_id == account_id)
                    .order_by(AccountOperation.id.desc())
                    .limit(limit)
                )
            )
            live = read_live(self.redis, _sent_to(r for r in rows if r.status in _OPEN))
            self._record(session, rows, live)
            return operation_views(session, rows, live)

    def _record(self, session: Session, rows: list[AccountOperation], live: dict[int, LiveOperation]) -> None:
        """Record final outcomes the workers wrote; a `check` also updates the account (and alerts if worse)."""
        events: list[NewEvent] = []
        now = utcnow()
        for row in rows:
            seen = live.get(row.id)
            if seen is None or row.status not in _OPEN or seen.status not in _FINAL:
                continue
            claimed = session.execute(
                update(AccountOperation)
                .where(AccountOperation.id == row.id, AccountOperation.status.in_(_OPEN))
                .values(
                    status=seen.status,
                    result=json.dumps(seen.result, separators=(",", ":")),
                    error=seen.error,
                    error_code=encoded(seen.coded),
                    worker=seen.worker or row.worker,
                    finished_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            session.refresh(row)
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another reader recorded it first
            subject = account_subject(row.account_id)
            if row.name == OperationName.PROFILE:
                _record_identity(session, row.account_id, seen.result)
            if row.name == OperationName.TWO_FA:
                keep_new_password(session.get(Account, row.account_id), row, seen.status, seen.result)
            if row.name == OperationName.CHECK and seen.status == OperationStatus.DONE:
                events += self._record_check(session, row.account_id, seen.result, now)
            else:
                line = (
                    free(describe_result(row.name, seen.result)[:400])
                    if seen.status == OperationStatus.DONE
                    else seen.coded
                )
                said = detail("operation_outcome", operation=row.name, status=seen.status, cause=line or free(""))
                events.append(NewEvent(FleetEventKind.OPERATION_FINISHED, subject, said))
        if events:
            record_events(session, events)

    @staticmethod
    def _record_check(session: Session, account_id: int, result: dict[str, Any], now: datetime) -> list[NewEvent]:
        account = session.get(Account, account_id)
        if account is None:
            return []
        verdict = verdict_of(result).value
        previous = account.check_verdict
        account.check_verdict = verdict
        account.checked_at = now
        account.check_summary = describe_result(OperationName.CHECK, result)[:500]
        account.check_result = json.dumps(result, separators=(",", ":"))[:4000]
        subject = account_subject(account_id)
        events = [
            NewEvent(FleetEventKind.ACCOUNT_CHECKED, subject, detail("check_summary", summary=account.check_summary))
        ]
        if got_worse(previous, verdict):
            worse = detail("verdict_worse", before=str(previous), after=verdict)
            events.append(NewEvent(FleetEventKind.ACCOUNT_VERDICT_WORSE, subject, worse))
        return events

    # --- the scan: record, resend, or end as "worker lost"

    def reconcile(self, limit: int = 5000) -> int:
        """Settle open operations: record final outcomes, resend those whose worker went away to where the
        account runs now, end the rest as "worker lost" after `lost_after`. Returns how many were resent."""
        outgoing: dict[str, list[OperationRequest]] = {}
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(AccountOperation)
                    .where(AccountOperation.status.in_(_OPEN))
                    .order_by(AccountOperation.id)
                    .limit(limit)
                )
            )
            if not rows:
                return 0
            live = read_live(self.redis, _sent_to(rows))
            self._record(session, rows, live)
            open_rows = [r for r in rows if r.status in _OPEN]
            if open_rows:
                outgoing = self._resend_or_lose(session, open_rows, live)
        self._send(outgoing)
        return sum(len(requests) for requests in outgoing.values())

    def _resend_or_lose(
        self, session: Session, rows: list[AccountOperation], live: dict[int, LiveOperation]
    ) -> dict[str, list[OperationRequest]]:
        snapshot = presence.read_all_heartbeats(self.redis)
        online = {
            name
            for name, beat in snapshot.beats.items()
            if liveness(beat, snapshot.now, self.offline_after) is Liveness.ONLINE
        }
        instances = {name: info.instance for name, info in presence.read_infos(self.redis, sorted(online)).items()}
        now = utcnow()
        outgoing: dict[str, list[OperationRequest]] = {}
        events: list[NewEvent] = []
        workers = {w.id: w for w in list_workers(session)}
        for row in rows:
            if not _gone(row, live.get(row.id), online, instances, now):
                continue
            account = session.get(Account, row.account_id)
            worker = workers.get(account.worker_id) if account and account.worker_id is not None else None
            target = worker.name if worker and worker.is_active and worker.name in online else None
            since = row.sent_at or row.created_at
            if target is not None and account is not None and account.session_enc and row.attempts < MAX_ATTEMPTS:
                claimed = session.execute(
                    update(AccountOperation)
                    .where(AccountOperation.id == row.id, AccountOperation.attempts == row.attempts)
                    .values(attempts=row.attempts + 1, worker=target, sent_at=now, status=OperationStatus.QUEUED.value)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    self.redis.delete(*{keys.operation(name, row.id) for name in (row.worker, target) if name})
                    request = OperationRequest(
                        operation_id=row.id,
                        name=OperationName(row.name),
                        params=with_stored_password(row.name, json.loads(row.params or "{}"), account),
                        spec=account_spec(account),
                    )
                    outgoing.setdefault(target, []).append(request)
                    log.info("operation %d (%s): sent again to worker %s", row.id, row.name, target)
            elif now - since > timedelta(seconds=self.lost_after) or row.attempts >= MAX_ATTEMPTS:
                reason = detail("worker_lost", worker=row.worker or "no worker")
                claimed = session.execute(
                    update(AccountOperation)
                    .where(AccountOperation.id == row.id, AccountOperation.status.in_(_OPEN))
                    .values(
                        status=OperationStatus.WORKER_LOST.value,
                        error=reason.text,
                        error_code=reason.encode(),
                        finished_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    subject = account_subject(row.account_id)
                    lost = detail("operation_lost", operation=row.name, cause=reason)
                    events.append(NewEvent(FleetEventKind.OPERATION_FINISHED, subject, lost))
        if events:
            record_events(session, events)
        return outgoing


def _record_identity(session: Session, account_id: int, result: dict[str, Any]) -> None:
    """A profile operation's outcome carries the account's names and username as Telegram answered them: what
    the fleet shows of the account from now on (else only a restart, asking Telegram who it is, would)."""
    identity = result.get("identity")
    account = session.get(Account, account_id) if isinstance(identity, dict) else None
    if account is None or not isinstance(identity, dict):
        return
    username, name = identity.get("username"), identity.get("name")
    account.tg_username = str(username)[:64] if username else None
    account.tg_name = str(name)[:255] if name else None


def _gone(
    row: AccountOperation, seen: LiveOperation | None, online: set[str], instances: dict[str, str], now: datetime
) -> bool:
    """Whether the worker that had the operation can no longer finish it."""
    if row.worker is None or row.worker not in online:
        return True
    if seen is not None:
        return bool(seen.instance) and instances.get(row.worker, seen.instance) != seen.instance  # it restarted
    sent = row.sent_at or row.created_at
    return now - sent > timedelta(seconds=UNCLAIMED_AFTER)


def _refusal(account: Account, worker: Worker | None, online: set[str]) -> Detail | None:
    if account.session_enc is None:
        return detail("no_session")
    if worker is None:
        return detail("no_worker")
    if not worker.is_active:
        return detail("worker_deactivated", worker=worker.name)
    if worker.name not in online:
        return detail("op_worker_offline", worker=worker.name)
    return None


def _readable(message: str) -> str:
    return message.replace("photo_b64", "photo").replace("_enc", "")


def _sent_to(rows: Iterable[AccountOperation]) -> dict[int, str]:
    """operation id -> the worker it was sent to, of the rows sent somewhere."""
    return {row.id: row.worker for row in rows if row.worker}
