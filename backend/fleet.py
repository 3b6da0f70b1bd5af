"""The fleet service: list, inspect, add, remove, activate and deactivate workers.

Plain functions over a Redis client and a session factory, used by the CLI and the bot alike. Online status
is read live from Redis heartbeats (one round trip for the whole fleet), never through a Celery round trip,
and how many accounts a worker runs from its heartbeat report (`celery_app.report`): unknown (None) while
the worker is silent; everything else comes from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from celery_app import presence, rejections, report
from celery_app.account_state import UNKNOWN
from celery_app.presence import Liveness, liveness
from common.details import Detail, stored
from common.errors import FleetError
from common.sealing import fingerprint
from common.validation import has_unsafe_characters, printable
from config import WORKER_NAME_PATTERN
from database import accounts as accounts_db
from database import events as events_db
from database import workers as workers_db
from database.audit import audited, named
from database.errors import WorkerNotFound
from database.models import FleetEvent, Worker, epoch_to_datetime

log = logging.getLogger(__name__)
MAX_ADDRESS_LENGTH = 255

# Filled in by the accounts layer: worker id -> (running, total) accounts (for the given worker ids, or all).
AccountCounter = Callable[..., dict[int, tuple[int, int]]]


class Logins(Protocol):
    """Workers' own Redis logins (`backend.worker_logins.WorkerLogins`): whether one has one, and deleting it."""

    def has_own_login(self, name: str) -> bool | None: ...

    def revoke(self, name: str, actor: str) -> bool: ...


class InvalidInput(FleetError, ValueError):
    """A name or address that cannot be accepted; the message says why, `code` which."""

    code = "invalid"


def iso_utc(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class WorkerView:
    id: int | None  # None: heartbeating but not recorded by a backend yet
    name: str
    address: str
    status: Liveness
    is_active: bool
    last_heartbeat: datetime | None
    seconds_since_heartbeat: float | None
    accounts: int
    accounts_running: int | None  # from the worker's report; None while it is silent (not known)
    host: str | None
    pid: int | None
    version: str | None
    started_at: datetime | None
    uptime_seconds: float | None
    key: str | None = None  # the fingerprint of its pinned public key (None: it has presented none yet)
    key_pending: str | None = None  # a different key it presented since: not trusted, no work until it is

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "status": self.status.value,
            "is_active": self.is_active,
            "last_heartbeat": iso_utc(self.last_heartbeat),
            "seconds_since_heartbeat": None
            if self.seconds_since_heartbeat is None
            else round(self.seconds_since_heartbeat, 1),
            "accounts": self.accounts,
            "accounts_running": self.accounts_running,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "started_at": iso_utc(self.started_at),
            "uptime_seconds": None if self.uptime_seconds is None else round(self.uptime_seconds),
            "key": self.key,
            "key_pending": self.key_pending,
        }


@dataclass(frozen=True)
class EventView:
    """One line of history; a transition repeated within the hour is one line with its `count`."""

    at: datetime
    kind: str
    subject: str
    detail: str
    actor: str
    count: int = 1
    last_at: datetime | None = None
    coded: Detail | None = None  # `detail` as a code with parameters: what the bots render

    @classmethod
    def of(cls, event: FleetEvent) -> EventView:
        return cls(
            event.created_at,
            event.kind,
            event.subject,
            event.detail,
            event.actor,
            event.repeat_count,
            event.last_at,
            stored(event.detail_code, event.detail),
        )

    @property
    def latest(self) -> datetime:
        """When it last happened: what the lines are ordered by (a folded line moves to the end of the log)."""
        return self.last_at or self.at

    @property
    def repeats(self) -> str:
        """`` or ` (×3 since 12:04:05 UTC)` for a folded line: its count and its first time."""
        if self.count <= 1:
            return ""
        shape = "%H:%M:%S UTC" if self.at.date() == self.latest.date() else "%Y-%m-%d %H:%M:%S UTC"
        return f" (×{self.count} since {self.at.strftime(shape)})"

    def to_json(self) -> dict[str, object]:
        return {
            "at": iso_utc(self.at),
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "actor": self.actor,
            "count": self.count,
            "last_at": iso_utc(self.last_at or self.at),
        }


@dataclass(frozen=True)
class WorkerDetail:
    worker: WorkerView
    events: list[EventView]
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> messages dropped from its queue
    own_login: bool | None = None  # a Redis login of its own (backend.worker_logins); None: Redis will not say

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_json(self) -> dict[str, object]:
        return {
            **self.worker.to_json(),
            "own_login": self.own_login,
            "rejected_messages": dict(sorted(self.rejected.items())),
            "events": [event.to_json() for event in self.events],
        }


def validate_worker_name(name: str) -> str:
    if not WORKER_NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid worker name '{printable(name)}': "
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            "invalid_worker_name",
        )
    return name


def validate_address(address: str) -> str:
    address = address.strip()
    if (
        not address
        or len(address) > MAX_ADDRESS_LENGTH
        or any(ch.isspace() for ch in address)
        or has_unsafe_characters(address)
    ):
        raise InvalidInput(
            f"invalid server address '{printable(address)}': give a host name or IP, e.g. 10.0.0.5 or srv1.example.com",
            "invalid_address",
        )
    return address


def _no_accounts(_session: Session, _worker_ids: list[int] | None = None) -> dict[int, tuple[int, int]]:
    return {}


@dataclass(frozen=True)
class WorkersPage:
    workers: list[WorkerView]
    page: int
    pages: int
    total: int


@dataclass(frozen=True)
class FleetSummary:
    workers_online: int
    workers_offline: int
    workers_deactivated: int
    accounts_by_status: dict[str, int]


class FleetService:
    def __init__(
        self,
        redis: Redis,
        sessions: sessionmaker[Session],
        offline_after: float,
        account_counter: AccountCounter = _no_accounts,
        logins: Logins | None = None,
    ) -> None:
        """`logins`: workers' own Redis logins, shown with a worker and deleted with it (None: not looked at)."""
        self.redis = redis
        self.sessions = sessions
        self.offline_after = offline_after
        self.account_counter = account_counter
        self.logins = logins

    def _view(
        self,
        worker: Worker,
        snapshot: presence.HeartbeatSnapshot,
        counts: dict[int, tuple[int, int]],
        reports: dict[str, report.WorkerReport],
        info: presence.WorkerInfo | None = None,
    ) -> WorkerView:
        beat = snapshot.beats.get(worker.name)
        status = liveness(beat, snapshot.now, self.offline_after)
        last = epoch_to_datetime(beat) if beat is not None else worker.last_heartbeat
        _recorded, total = counts.get(worker.id, (0, 0))
        running = self._running(worker.name, beat, snapshot.now, reports)
        started = worker.started_at
        host, pid, version = worker.host, worker.pid, worker.version
        if info is not None and status is Liveness.ONLINE:  # what the running process says beats the record
            started, host, pid, version = epoch_to_datetime(info.started_at), info.host, info.pid, info.version
        return WorkerView(
            id=worker.id,
            name=worker.name,
            address=worker.address,
            status=status,
            is_active=worker.is_active,
            last_heartbeat=last,
            seconds_since_heartbeat=None if last is None else max(0.0, snapshot.now - last.timestamp()),
            accounts=total,
            accounts_running=running,
            host=host,
            pid=pid,
            version=version,
            started_at=started,
            uptime_seconds=max(0.0, snapshot.now - started.timestamp())
            if started and status is Liveness.ONLINE
            else None,
            key=fingerprint(worker.public_key) if worker.public_key else None,
            key_pending=fingerprint(worker.pending_key) if worker.pending_key else None,
        )

    def _running(
        self, name: str, beat: float | None, now: float, reports: dict[str, report.WorkerReport]
    ) -> int | None:
        """Accounts the worker reports running: 0 when offline, None while silent or unreported."""
        if liveness(beat, now, self.offline_after) is Liveness.OFFLINE:
            return 0
        found = reports.get(name)
        if found is None or beat is None or now - beat > presence.fence_after(self.offline_after):
            return None
        return found.count("running")

    def _reports(self, snapshot: presence.HeartbeatSnapshot, names: list[str]) -> dict[str, report.WorkerReport]:
        return report.read_reports(self.redis, [name for name in names if name in snapshot.beats])

    def list_workers(self, active_only: bool = False) -> list[WorkerView]:
        snapshot = presence.read_all_heartbeats(self.redis)
        with self.sessions() as session:
            workers = list(workers_db.list_workers(session, active_only=active_only))
            counts = self.account_counter(session)
            known = set(workers_db.worker_rows(session)) if active_only else {w.name for w in workers}
        reports = self._reports(snapshot, [w.name for w in workers])
        views = [self._view(worker, snapshot, counts, reports) for worker in workers]
        views += self._live_but_unrecorded(snapshot, known)
        return sorted(views, key=lambda view: view.name)

    def _live_but_unrecorded(self, snapshot: presence.HeartbeatSnapshot, known: set[str]) -> list[WorkerView]:
        """Workers heartbeating that the backend has not recorded yet (it discovers them within a scan)."""
        fresh = [
            name
            for name, beat in snapshot.beats.items()
            if name not in known and liveness(beat, snapshot.now, self.offline_after) is Liveness.ONLINE
        ]
        infos = presence.read_infos(self.redis, fresh)
        views = []
        for name in fresh:
            info = infos.get(name)
            beat = snapshot.beats[name]
            started = epoch_to_datetime(info.started_at) if info else None
            views.append(
                WorkerView(
                    id=None,
                    name=name,
                    address=info.address if info else "",
                    status=Liveness.ONLINE,
                    is_active=True,
                    last_heartbeat=epoch_to_datetime(beat),
                    seconds_since_heartbeat=max(0.0, snapshot.now - beat),
                    accounts=0,
                    accounts_running=0,
                    host=info.host if info else None,
                    pid=info.pid if info else None,
                    version=info.version if info else None,
                    started_at=started,
                    uptime_seconds=max(0.0, snapshot.now - info.started_at) if info else None,
                )
            )
        return views

    def workers_page(self, page: int, per_page: int = 10, active_only: bool = False) -> WorkersPage:
        """One page of workers with live status: one query for the page, one for its counts, one Redis trip."""
        with self.sessions() as session:
            total = workers_db.count_workers(session, active_only)
            pages = max(1, -(-total // per_page))
            page = min(max(0, page), pages - 1)
            workers = workers_db.workers_page(session, page * per_page, per_page, active_only)
            counts = self.account_counter(session, [w.id for w in workers])
        snapshot = presence.read_heartbeats(self.redis, [w.name for w in workers])
        reports = self._reports(snapshot, [w.name for w in workers])
        return WorkersPage([self._view(w, snapshot, counts, reports) for w in workers], page, pages, total)

    def last_event_id(self) -> int:
        with self.sessions() as session:
            return events_db.last_event_id(session)

    def events_since(self, last_id: int, limit: int = 500) -> list[FleetEvent]:
        with self.sessions() as session:
            return list(events_db.events_after(session, last_id, limit))

    def name_of(self, worker_id: int) -> str:
        with self.sessions() as session:
            return workers_db.worker_by_id(session, worker_id).name

    def id_of(self, name: str) -> int:
        with self.sessions() as session:
            return workers_db.get_worker(session, name).id

    def usable_workers(self, exclude: str | None = None) -> list[WorkerView]:
        """Online and active workers (for pickers)."""
        return [
            view
            for view in self.list_workers(active_only=True)
            if view.status is Liveness.ONLINE and view.name != exclude
        ]

    def summary(self) -> FleetSummary:
        """Workers by liveness and accounts by status; `running` is what the workers report now, and what is
        recorded running but not reported (the backend has not caught up, or is down) counts as `unknown`."""
        snapshot = presence.read_all_heartbeats(self.redis)
        with self.sessions() as session:
            rows = workers_db.worker_rows(session)
            by_status = accounts_db.accounts_by_status(session)
        online = [
            name
            for name in rows
            if liveness(snapshot.beats.get(name), snapshot.now, self.offline_after) is Liveness.ONLINE
        ]
        reports = self._reports(snapshot, online)
        live_running = sum(self._running(name, snapshot.beats.get(name), snapshot.now, reports) or 0 for name in online)
        recorded_running = by_status.pop("running", 0)
        if live_running:
            by_status["running"] = live_running
        if recorded_running > live_running:
            by_status[UNKNOWN] = by_status.get(UNKNOWN, 0) + recorded_running - live_running
        deactivated = sum(1 for row in rows.values() if not row.is_active)
        return FleetSummary(len(online), len(rows) - len(online), deactivated, by_status)

    def get_worker(self, name: str, event_limit: int = 10) -> WorkerDetail:
        snapshot = presence.read_heartbeats(self.redis, [name])
        with self.sessions() as session:
            worker = workers_db.find_worker(session, name)
            if worker is None:
                live = self._live_but_unrecorded(snapshot, set())
                if not live:
                    raise WorkerNotFound(name)
                return WorkerDetail(live[0], [], self._rejected(name), self._own_login(name))
            info = presence.read_infos(self.redis, [name]).get(name)
            reports = self._reports(snapshot, [name])
            view = self._view(worker, snapshot, self.account_counter(session, [worker.id]), reports, info)
            events = [
                EventView.of(event) for event in events_db.recent_events(session, subject=name, limit=event_limit)
            ]
        return WorkerDetail(view, events, self._rejected(name), self._own_login(name))

    def _own_login(self, name: str) -> bool | None:
        return None if self.logins is None else self.logins.has_own_login(name)

    def _rejected(self, name: str) -> dict[str, int]:
        return rejections.read(self.redis, [name]).get(name, {})

    def is_online(self, name: str) -> bool:
        snapshot = presence.read_heartbeats(self.redis, [name])
        return liveness(snapshot.beats.get(name), snapshot.now, self.offline_after) is Liveness.ONLINE

    @audited("worker.add", named(("worker", "name")), params=("address",))
    def add_worker(self, name: str, address: str, actor: str) -> WorkerView:
        """Pre-register a server; it reads offline until a worker of that name heartbeats."""
        validate_worker_name(name)
        address = validate_address(address)
        with self.sessions.begin() as session:
            workers_db.add_worker(session, name, address, actor)
        return self.get_worker(name).worker

    @audited("worker.remove", named(("worker", "name")))
    def remove_worker(self, name: str, actor: str) -> None:
        """Forget an offline worker (refused while it is online)."""
        online = self.is_online(name)
        with self.sessions.begin() as session:
            workers_db.remove_worker(session, name, actor, is_online=online)
        presence.forget(self.redis, name)
        if self.logins is not None:
            try:
                self.logins.revoke(name, actor)
            except (FleetError, RedisError) as error:  # the worker is gone; its login stays until deleted by hand
                log.warning(
                    "worker %r removed, but its Redis login was not deleted (%s): ACL DELUSER fleet-worker-%s",
                    name,
                    error,
                    name,
                )

    @audited("worker.trust_key", named(("worker", "name")))
    def trust_key(self, name: str, actor: str) -> str:
        """Pin the key the worker presents instead of its pinned one (after its host was reinstalled, say): it gets
        work again from the next scan. Returns the new key's fingerprint."""
        with self.sessions.begin() as session:
            return workers_db.trust_worker_key(session, name, actor)

    @audited(lambda a: "worker.activate" if a["active"] else "worker.deactivate", named(("worker", "name")))
    def set_active(self, name: str, active: bool, actor: str) -> bool:
        with self.sessions.begin() as session:
            return workers_db.set_worker_active(session, name, active, actor)
