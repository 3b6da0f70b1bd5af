"""Account operations across the fleet: ask for them, follow them, record how they ended.

`submit` records one row per account (a batch), then sends each worker one message with its accounts'
operations. Workers write where each operation stands into Redis (`keys.operation`); `progress` reads that
and records final outcomes in the database, and so does every backend scan (`reconcile`), which also sends
again the operations whose worker went away — to the worker the account runs on now — or, once the account
runs nowhere, ends them as "worker lost". A resend is claimed with a compare-and-set on the row, so two
readers never send one operation twice.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.accounts_service import AccountError, AccountService, account_spec
from backend.dispatch import TaskDispatcher
from backend.fleet import iso_utc
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
from database import operations as ops
from database.models import Account, AccountOperation, FleetEventKind, Worker, utcnow
from database.operations import NewEvent, epoch_to_datetime

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # sends of one operation (the first and two after its worker went away)
UNCLAIMED_AFTER = COMMAND_EXPIRES_SECONDS + 30  # sent, never picked up: the message expired unseen
LOST_AFTER = 180.0  # its worker silent this long and the account runs nowhere else: "worker lost"
_OPEN = [status.value for status in OperationStatus if status not in FINAL_STATUSES]
_FINAL = frozenset(status.value for status in FINAL_STATUSES)
_KNOWN = frozenset(status.value for status in OperationStatus)


@dataclass(frozen=True)
class OperationView:
    id: int
    batch: str
    account_id: int
    phone_masked: str
    name: str
    status: str
    result: dict[str, Any]
    error: str
    worker: str | None
    until: float | None  # a flood wait's end (epoch seconds)
    created_at: datetime
    finished_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status in _FINAL

    @property
    def summary(self) -> str:
        """One line: the result, the error, or where it stands."""
        if self.status == OperationStatus.DONE:
            return describe_result(self.name, self.result)
        if self.status == OperationStatus.FLOOD_WAIT and self.until:
            wait = max(0, round(self.until - time.time()))
            return f"Telegram asked to wait; resumes in {wait} s" + (f" ({self.error})" if self.error else "")
        return self.error

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "batch": self.batch,
            "account_id": self.account_id,
            "phone": self.phone_masked,
            "operation": self.name,
            "status": self.status,
            "result": self.result,
            "error": self.error or None,
            "summary": self.summary,
            "worker": self.worker,
            "flood_wait_until": iso_utc(epoch_to_datetime(self.until)) if self.until else None,
            "created_at": iso_utc(self.created_at),
            "finished_at": iso_utc(self.finished_at),
        }


@dataclass(frozen=True)
class Batch:
    batch: str
    operations: list[OperationView] = field(default_factory=list)


@dataclass(frozen=True)
class LiveOperation:
    """What a worker wrote about an operation (`keys.operation`)."""

    status: str
    worker: str
    instance: str
    result: dict[str, Any]
    error: str
    until: float | None

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> LiveOperation | None:
        if not raw or raw.get("status") not in _KNOWN:
            return None
        try:
            result = json.loads(raw.get("result") or "{}")
        except ValueError:
            result = {}
        until = raw.get("until") or ""
        return cls(
            raw["status"],
            raw.get("worker", ""),
            raw.get("instance", ""),
            result if isinstance(result, dict) else {},
            raw.get("error", ""),
            float(until) if until.replace(".", "", 1).isdigit() else None,
        )


def read_live(redis: Redis, operation_ids: list[int]) -> dict[int, LiveOperation]:
    if not operation_ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for operation_id in operation_ids:
        pipe.hgetall(keys.operation(operation_id))
    found: dict[int, LiveOperation] = {}
    for operation_id, raw in zip(operation_ids, pipe.execute(), strict=True):
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (raw or {}).items()
        }
        live = LiveOperation.from_fields(decoded)
        if live is not None:
            found[operation_id] = live
    return found


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
                raise AccountError(f"no account with id {', '.join(missing)}", "account_not_found")
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
                raise AccountError("the new 2FA password must not be empty", "invalid_params")
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
                    raise AccountError(
                        f"the photo is larger than {PHOTO_MAX_BYTES // (1024 * 1024)} MB", "photo_invalid"
                    )
                if image_kind(data) is None:
                    raise AccountError("the photo is not a JPEG or PNG image", "photo_invalid")
                wire["photo_b64"] = base64.b64encode(data).decode()
            if not wire:
                raise AccountError(
                    "nothing to change: give a first name, last name, bio, username or photo", "invalid_params"
                )
        elif given:
            raise AccountError(f"the {name.value} operation takes no options", "invalid_params")
        try:
            OPERATION_PARAMS[name].model_validate(wire)
        except ValidationError as error:
            raise AccountError(f"invalid options: {_readable(validation_message(error))}", "invalid_params") from None
        return wire

    @staticmethod
    def operation_name(value: str) -> OperationName:
        try:
            return OperationName(value)
        except ValueError:
            choices = ", ".join(name.value for name in OperationName)
            raise AccountError(f"unknown operation {value!r}; choose one of: {choices}", "unknown_operation") from None

    # --- asking

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
            workers = {w.id: w for w in ops.list_workers(session)}
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
                    error=refusal or "",
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
                    request = OperationRequest(
                        operation_id=row.id, name=name, params=params, spec=account_spec(accounts[row.account_id])
                    )
                    outgoing.setdefault(row.worker, []).append(request)
            ops.record_events(
                session,
                [
                    NewEvent(FleetEventKind.OPERATION_FINISHED, ops.account_subject(r.account_id), f"{name}: {r.error}")
                    for r in rows
                    if r.error
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
            live = read_live(self.redis, [r.id for r in rows if r.status in _OPEN])
            self._record(session, rows, live)
            return self._views(session, rows, live)

    def record(self, operation_ids: list[int]) -> None:
        """Record the outcomes of these operations now (their workers said they finished: the event path)."""
        with self.sessions.begin() as session:
            rows = list(session.scalars(select(AccountOperation).where(AccountOperation.id.in_(operation_ids))))
            self._record(session, rows, read_live(self.redis, [r.id for r in rows if r.status in _OPEN]))

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
            live = read_live(self.redis, [r.id for r in rows if r.status in _OPEN])
            self._record(session, rows, live)
            return self._views(session, rows, live)

    def _views(
        self, session: Session, rows: list[AccountOperation], live: dict[int, LiveOperation]
    ) -> list[OperationView]:
        """Views from the rows and the same live read `_record` saw (one read: a worker finishing meanwhile
        cannot pair a final status with a result not read yet)."""
        ids = sorted({r.account_id for r in rows})
        masked = dict(session.execute(select(Account.id, Account.phone_masked).where(Account.id.in_(ids))).all())
        views = []
        for row in rows:
            seen = live.get(row.id)
            try:
                result = json.loads(row.result) if row.result else {}
            except ValueError:
                result = {}
            status, error, until = row.status, row.error, None
            if seen is not None and row.status in _OPEN:
                status, error, until, result = seen.status, seen.error, seen.until, seen.result
            views.append(
                OperationView(
                    row.id,
                    row.batch,
                    row.account_id,
                    masked.get(row.account_id, "?"),
                    row.name,
                    status,
                    result if isinstance(result, dict) else {},
                    error,
                    seen.worker if seen is not None and seen.worker else row.worker,
                    until,
                    row.created_at,
                    row.finished_at,
                )
            )
        return views

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
                    worker=seen.worker or row.worker,
                    finished_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            session.refresh(row)
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another reader recorded it first
            subject = ops.account_subject(row.account_id)
            if row.name == OperationName.CHECK and seen.status == OperationStatus.DONE:
                events += self._record_check(session, row.account_id, seen.result, now)
            else:
                line = describe_result(row.name, seen.result) if seen.status == OperationStatus.DONE else seen.error
                events.append(
                    NewEvent(FleetEventKind.OPERATION_FINISHED, subject, f"{row.name} {seen.status}: {line}"[:500])
                )
        if events:
            ops.record_events(session, events)

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
        subject = ops.account_subject(account_id)
        events = [NewEvent(FleetEventKind.ACCOUNT_CHECKED, subject, account.check_summary)]
        if got_worse(previous, verdict):
            events.append(NewEvent(FleetEventKind.ACCOUNT_VERDICT_WORSE, subject, f"{previous} → {verdict}"))
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
            live = read_live(self.redis, [r.id for r in rows])
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
        workers = {w.id: w for w in ops.list_workers(session)}
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
                    self.redis.delete(keys.operation(row.id))
                    request = OperationRequest(
                        operation_id=row.id,
                        name=OperationName(row.name),
                        params=json.loads(row.params or "{}"),
                        spec=account_spec(account),
                    )
                    outgoing.setdefault(target, []).append(request)
                    log.info("operation %d (%s): sent again to worker %s", row.id, row.name, target)
            elif now - since > timedelta(seconds=self.lost_after) or row.attempts >= MAX_ATTEMPTS:
                reason = f"worker lost: {row.worker or 'no worker'} went away before it finished"
                claimed = session.execute(
                    update(AccountOperation)
                    .where(AccountOperation.id == row.id, AccountOperation.status.in_(_OPEN))
                    .values(status=OperationStatus.WORKER_LOST.value, error=reason, finished_at=now)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    subject = ops.account_subject(row.account_id)
                    events.append(NewEvent(FleetEventKind.OPERATION_FINISHED, subject, f"{row.name} {reason}"))
        if events:
            ops.record_events(session, events)
        return outgoing


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


def _refusal(account: Account, worker: Worker | None, online: set[str]) -> str | None:
    if account.session_enc is None:
        return "the account has no session: log in first"
    if worker is None:
        return "the account is not assigned to a worker"
    if not worker.is_active:
        return f"worker {worker.name!r} is deactivated; activate it or move the account"
    if worker.name not in online:
        return f"worker {worker.name!r} is offline"
    return None


def _readable(message: str) -> str:
    return message.replace("photo_b64", "photo").replace("_enc", "")
