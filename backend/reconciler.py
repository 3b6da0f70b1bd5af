"""The backend's reconciler: brings the database in line with live state in Redis, and workers in line with
the desired state in the database.

Every scan is level-triggered: it reads all heartbeats and all workers' reports (what each actually runs) in
two Redis round trips and all workers and accounts in two SELECTs, then writes the differences with a few
batched statements: newly discovered workers, heartbeat times, online/offline transitions, corrected
account statuses, and the fleet events the bot notifies about; it starts and stops accounts where the
desired state says so (`backend.account_sync`). Between scans it applies wire events from the Redis Stream
at once (in order, through a consumer group): account statuses are recorded, and worker events make the
next scan come at once. Nothing depends on an event having survived: a lost one delays a correction by at
most one scan. The acting backend also trims the stream of what it applied and prunes old history. Only the
backend holding the leader lock (`backend.leader`) acts; others stand by (`run_reconciler`).

After a Redis failover or an outage, no worker recorded online is judged offline for one WORKER_OFFLINE_AFTER
(`backend.failover_grace`): the heartbeats lost with the old primary do not make a live worker offline.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from kombu.exceptions import BatchPublishError, OperationalError
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from backend.account_sync import AccountSync, SyncReport
from backend.event_trust import believable, plugin_event
from backend.failover_grace import FailoverGrace
from backend.leader import LeaderLock
from backend.observed import sight
from celery_app import events, keys, leases, presence, report
from celery_app.events import WireEvent, WireEventKind
from celery_app.operations import FINAL_STATUSES
from celery_app.presence import Liveness, WorkerInfo, liveness
from common.details import Detail, detail
from database.audit import prune_audit
from database.events import NewEvent, prune_events, record_events
from database.models import FleetEventKind, Worker, WorkerStatus, epoch_to_datetime
from database.workers import WorkerRow, apply_worker_keys, insert_discovered_workers, update_heartbeats, worker_rows

if TYPE_CHECKING:
    from backend.metrics import BackendMetrics

log = logging.getLogger(__name__)

MAX_EVENT_WAIT_SECONDS = 1.0
# The broker is the same Redis, met through Kombu: a scan's starts and stops that cannot be sent (a failover)
# are Redis being away, not a reason for the reconciler to stop.
BROKER_UNAVAILABLE = (OperationalError, BatchPublishError)
PRUNE_EVERY_SECONDS = 3600.0
PRUNE_BATCH = 5000
PRUNE_BUDGET_SECONDS = 1.0


@dataclass
class ScanReport:
    workers: int = 0
    discovered: list[str] = field(default_factory=list)
    went_online: list[str] = field(default_factory=list)
    went_offline: list[str] = field(default_factory=list)
    accounts: SyncReport | None = None
    seconds: float = 0.0


PLUGIN_EVENT, PLUGIN_ERROR = WireEventKind.PLUGIN_EVENT, WireEventKind.PLUGIN_ERROR  # worker.plugins' events
FINAL = frozenset(status.value for status in FINAL_STATUSES)


def _worker_columns(info: WorkerInfo | None) -> dict[str, object]:
    if info is None:
        return {}
    return {
        "host": info.host,
        "pid": info.pid,
        "version": info.version,
        "started_at": epoch_to_datetime(info.started_at) if info.started_at else None,
    }


def _offline_detail(beat: float | None, now: float) -> Detail:
    return detail("no_heartbeat_yet") if beat is None else detail("no_heartbeat", seconds=now - beat)


def _host(info: WorkerInfo | None) -> Detail | None:
    return detail("worker_host", host=info.host) if info else None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the length of a scan.

    A scan holds the whole fleet in plain rows for a moment (100,000 accounts: as many tuples, and as many
    entries of the workers' reports); allocating them set off a full collection, which walks every object of
    the process, most scans (~100-250 ms of a 1 s scan). They are freed by reference counting as soon as the
    scan returns, so the collector, back on, finds almost nothing new.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Reconciler:
    """One scan or one batch of events at a time; holds no state between calls but its collaborators."""

    def __init__(
        self,
        redis: Redis,
        sessions: sessionmaker[Session],
        offline_after: float,
        accounts: AccountSync | None = None,
        retention_days: float = 30.0,
        audit_retention_days: float = 365.0,
        after_scan: list[Callable[[], object]] | None = None,
        on_operations_finished: Callable[[list[int]], object] | None = None,
    ) -> None:
        self.on_operations_finished = on_operations_finished  # records outcomes as workers report them
        self.after_scan = after_scan or []  # further level-triggered steps: operations, plugin configuration
        self.redis = redis
        self.sessions = sessions
        self.offline_after = offline_after
        self.accounts = accounts
        self.retention = timedelta(days=retention_days)
        self.audit_retention = timedelta(days=audit_retention_days)  # the audit log is kept apart, longer
        self.grace = FailoverGrace(offline_after)  # after a failover: lost heartbeats make no worker offline
        self._other_key: dict[str, str] = {}  # worker -> a key other than its pinned one, seen in the last scan
        self.event_streams = events.streams_of([])  # the shared one and each known worker's own (every scan)
        self._listed = -1  # names in the heartbeat index when `follow_new_workers` last looked

    def scan(self) -> ScanReport:
        with _collector_paused():
            return self._scan()

    def _scan(self) -> ScanReport:
        started = time.perf_counter()
        snapshot = presence.read_all_heartbeats(self.redis, with_primary=True)
        self.grace.note(snapshot)
        online = [
            name
            for name, beat in snapshot.beats.items()
            if liveness(beat, snapshot.now, self.offline_after) is Liveness.ONLINE
        ]
        reports = report.read_reports(self.redis, online) if self.accounts is not None else {}
        presented = {name: seen.key for name, seen in reports.items()}  # in the report: no command of its own
        result = ScanReport(workers=len(snapshot.beats))
        with self.sessions.begin() as session:
            rows = worker_rows(session)
            self._follow_streams([*rows, *snapshot.beats])
            self._insert_discovered(session, snapshot, [name for name in snapshot.beats if name not in rows], result)
            self._sync_existing(session, snapshot, rows, result)
            # A worker presenting a key other than its pinned one gets no work.
            untrusted = apply_worker_keys(session, rows, self._judged_keys(presented, rows))
            if self.accounts is not None:
                sights = {
                    name: self.grace.sight(
                        sight(name, snapshot.beats.get(name), snapshot.now, self.offline_after, reports.get(name)),
                        rows[name].status if name in rows else None,
                        snapshot.now,
                    )
                    for name in {*rows, *snapshot.beats}
                }
                result.accounts = self.accounts.reconcile(
                    session,
                    self.redis,
                    {row.id: name for name, row in rows.items()},
                    {row.id for row in rows.values() if row.is_active and row.name not in untrusted},
                    sights,
                    snapshot.now,
                )
        if self.accounts is not None and result.accounts is not None:
            self.accounts.send(result.accounts)
            leases.sweep(self.redis)  # moved accounts whose earlier worker let go: forget that worker
        for step in self.after_scan:
            try:
                step()
            except (RedisError, SQLAlchemyError):
                raise
            except Exception:
                log.exception("scan step %s failed", getattr(step, "__qualname__", step))
        result.seconds = time.perf_counter() - started
        if result.discovered or result.went_online or result.went_offline:
            log.info(
                "scan: %d workers, discovered %s, online %s, offline %s",
                result.workers,
                result.discovered or "-",
                result.went_online or "-",
                result.went_offline or "-",
            )
        return result

    def follow_known_streams(self) -> list[str]:
        """The event streams of every worker known now, by record, heartbeat or a stream it wrote while no
        backend ran (before a new leader reads what was left pending)."""
        with self.sessions() as session:
            known = list(worker_rows(session))
        written = [events.writer_of(str(k)) for k in self.redis.scan_iter(match=keys.worker_events("*"), count=1000)]
        self._follow_streams([*known, *presence.read_all_heartbeats(self.redis).beats, *filter(None, written)])
        return self.event_streams

    def follow_new_workers(self) -> list[str]:
        """Between scans: the streams of workers that registered since (their first events are read at once);
        the index is read again only when the number of names in it changed (the scan follows the rest)."""
        listed = int(self.redis.zcard(keys.HEARTBEATS))
        if listed == self._listed:
            return self.event_streams
        self._listed = listed
        followed = {events.writer_of(stream) for stream in self.event_streams}
        new = [name for name in map(str, self.redis.zrange(keys.HEARTBEATS, 0, -1)) if name not in followed]
        if new:
            registered = presence.read_heartbeats(self.redis, new).beats  # a name only in the index is nobody
            if registered:
                self._follow_streams([*filter(None, followed), *registered])
        return self.event_streams

    def _follow_streams(self, workers: list[str]) -> None:
        """Read the events of every worker known by record or heard from (a new one's from its first), and of any
        stream still holding events not read yet (a worker that came and went while no backend ran)."""
        streams = events.streams_of(workers)
        wanted = set(streams)
        others = [stream for stream in self.event_streams if stream not in wanted]
        if others:
            pipe = self.redis.pipeline(transaction=False)
            for stream in others:
                pipe.xlen(stream)
            streams += [stream for stream, length in zip(others, pipe.execute(), strict=True) if length]
        if streams != self.event_streams:
            events.ensure_group(self.redis, set(streams).difference(self.event_streams))
            self.event_streams = streams

    def _judged_keys(self, presented: dict[str, str], rows: dict[str, WorkerRow]) -> dict[str, str]:
        """The keys to judge this scan: a key other than the pinned one only once two scans in a row saw it (a
        rotation's moment between the worker's new key and the control plane pinning it raises no alarm; what is
        sent meanwhile is sealed to the pinned key, which an impostor cannot open)."""
        pinned = {name: row.public_key for name, row in rows.items()}
        other = {name: key for name, key in presented.items() if key and pinned.get(name) not in (None, key)}
        judged = {name: key for name, key in presented.items() if name not in other or self._other_key.get(name) == key}
        self._other_key = other
        return judged

    def prune_history(self, budget: float = PRUNE_BUDGET_SECONDS) -> int:
        """Delete fleet events older than their retention, then audit rows older than theirs, in small
        transactions, for at most `budget` seconds."""
        now = epoch_to_datetime(presence.server_time(self.redis))
        deadline = time.monotonic() + budget
        deleted = 0
        for prune, retention, what in (
            (prune_events, self.retention, "fleet event(s)"),
            (prune_audit, self.audit_retention, "audit row(s)"),
        ):
            cutoff, pruned = now - retention, 0
            while time.monotonic() < deadline:
                with self.sessions.begin() as session:
                    batch = prune(session, cutoff, PRUNE_BATCH)
                pruned += batch
                if batch < PRUNE_BATCH:
                    break
            if pruned:
                log.info("pruned %d %s older than %s", pruned, what, cutoff.strftime("%Y-%m-%d %H:%M UTC"))
            deleted += pruned
        return deleted

    def _insert_discovered(
        self, session: Session, snapshot: presence.HeartbeatSnapshot, names: list[str], report: ScanReport
    ) -> None:
        if not names:
            return
        infos = presence.read_infos(self.redis, names)
        rows: list[dict[str, object]] = []
        new_events: list[NewEvent] = []
        for name in names:
            beat = snapshot.beats[name]
            status = liveness(beat, snapshot.now, self.offline_after)
            info = infos.get(name)
            seen = epoch_to_datetime(beat)
            rows.append(
                {
                    "name": name,
                    "address": info.address if info else "",
                    "is_active": True,
                    "status": status.value,
                    "last_heartbeat": seen,
                    "first_seen": seen,
                    **_worker_columns(info),
                }
            )
            new_events.append(NewEvent(FleetEventKind.WORKER_DISCOVERED, name, _host(info), at=seen))
            report.discovered.append(name)
            if status is Liveness.ONLINE:
                new_events.append(NewEvent(FleetEventKind.WORKER_ONLINE, name, None, at=seen))
                report.went_online.append(name)
        insert_discovered_workers(session, rows)
        record_events(session, new_events)

    def _sync_existing(
        self,
        session: Session,
        snapshot: presence.HeartbeatSnapshot,
        rows: dict[str, WorkerRow],
        report: ScanReport,
    ) -> None:
        changes: list[tuple[int, str, datetime | None]] = []
        new_events: list[NewEvent] = []
        now = epoch_to_datetime(snapshot.now)
        for name, row in rows.items():
            beat = snapshot.beats.get(name)
            status = self.grace.judged(row.status, beat, snapshot.now)
            last_heartbeat = epoch_to_datetime(beat) if beat is not None else row.last_heartbeat
            if status.value == row.status and last_heartbeat == row.last_heartbeat:
                continue
            changes.append((row.id, status.value, last_heartbeat))
            if status.value != row.status:
                if status is Liveness.ONLINE:
                    new_events.append(NewEvent(FleetEventKind.WORKER_ONLINE, name, None, at=now))
                    report.went_online.append(name)
                else:
                    new_events.append(
                        NewEvent(FleetEventKind.WORKER_OFFLINE, name, _offline_detail(beat, snapshot.now), at=now)
                    )
                    report.went_offline.append(name)
        update_heartbeats(session, changes)
        record_events(session, new_events)

    def apply_events(self, batch: list[WireEvent]) -> bool:
        """Record account statuses, then worker events in order, settling each named worker on its live state.

        Returns True when a worker came or went: the caller should scan now (the scan does the accounts).
        """
        batch = believable(self.sessions, batch)
        account_events = [e for e in batch if e.kind == WireEventKind.ACCOUNT_STATUS]
        if account_events and self.accounts is not None:
            with self.sessions.begin() as session:
                self.accounts.apply_states(session, self.redis, account_events)
        finished = [
            int(e.subject)
            for e in batch
            if e.kind == WireEventKind.OPERATION_STATUS and e.subject.isdigit() and e.data.get("status") in FINAL
        ]
        if finished and self.on_operations_finished is not None:
            self.on_operations_finished(finished)
        plugin_events = [plugin_event(e) for e in batch if e.kind in (PLUGIN_EVENT, PLUGIN_ERROR)]
        if any(plugin_events):
            with self.sessions.begin() as session:
                record_events(session, [e for e in plugin_events if e is not None])
        worker_events = [e for e in batch if e.kind in (WireEventKind.WORKER_ONLINE, WireEventKind.WORKER_OFFLINE)]
        names = sorted({e.subject for e in worker_events})
        if not names:
            return False
        with self.sessions.begin() as session:
            workers = {w.name: w for w in session.scalars(select(Worker).where(Worker.name.in_(names)))}
            new_events: list[NewEvent] = []
            for event in worker_events:
                at = epoch_to_datetime(event.at) if event.at else None
                worker = workers.get(event.subject)
                if event.kind == WireEventKind.WORKER_ONLINE:
                    worker = self._apply_online(session, workers, event, at, new_events)
                elif worker is not None and worker.status == WorkerStatus.ONLINE:
                    worker.status = WorkerStatus.OFFLINE.value
                    reason = Detail.decode(str(event.data.get("code") or "")) or detail("stopped")
                    new_events.append(NewEvent(FleetEventKind.WORKER_OFFLINE, worker.name, reason, at=at))
            snapshot = presence.read_heartbeats(self.redis, names)
            now = epoch_to_datetime(snapshot.now)
            for name, worker in workers.items():
                beat = snapshot.beats.get(name)
                live = self.grace.judged(worker.status, beat, snapshot.now)
                if beat is not None:
                    worker.last_heartbeat = epoch_to_datetime(beat)
                if live.value != worker.status:
                    worker.status = live.value
                    kind = FleetEventKind.WORKER_ONLINE if live is Liveness.ONLINE else FleetEventKind.WORKER_OFFLINE
                    why = None if live is Liveness.ONLINE else _offline_detail(beat, snapshot.now)
                    new_events.append(NewEvent(kind, name, why, at=now))
            record_events(session, new_events)
        return True

    def _apply_online(
        self,
        session: Session,
        workers: dict[str, Worker],
        event: WireEvent,
        at: datetime | None,
        new_events: list[NewEvent],
    ) -> Worker:
        info = WorkerInfo.from_redis({k: str(v) for k, v in event.data.items()})
        worker = workers.get(event.subject)
        if worker is None:
            worker = Worker(
                name=event.subject,
                address=info.address if info else "",
                is_active=True,
                status=WorkerStatus.OFFLINE.value,
                first_seen=at,
            )
            session.add(worker)
            workers[event.subject] = worker
            new_events.append(NewEvent(FleetEventKind.WORKER_DISCOVERED, event.subject, _host(info), at=at))
        columns = _worker_columns(info)
        restarted = (
            worker.id is not None
            and worker.started_at is not None
            and columns.get("started_at") not in (None, worker.started_at)
        )
        if restarted and worker.status == WorkerStatus.ONLINE:  # replaced so fast it never read as offline
            said = detail("restarted_pid", pid=info.pid) if info else detail("restarted")
            new_events.append(NewEvent(FleetEventKind.WORKER_ONLINE, event.subject, said, at=at))
        for column, value in columns.items():
            setattr(worker, column, value)
        if info is not None and not worker.address:
            worker.address = info.address
        if worker.first_seen is None:
            worker.first_seen = at
        if worker.status != WorkerStatus.ONLINE:
            worker.status = WorkerStatus.ONLINE.value
            worker.last_heartbeat = at
            new_events.append(NewEvent(FleetEventKind.WORKER_ONLINE, event.subject, None, at=at))
        return worker


def run_reconciler(
    reconciler: Reconciler,
    leader: LeaderLock,
    scan_interval: float,
    stop: threading.Event,
    metrics: BackendMetrics | None = None,
) -> None:
    """Scan every `scan_interval` seconds and apply events in between, while leader, until `stop` is set."""
    redis = reconciler.redis
    leading = False
    next_scan = 0.0
    next_prune = 0.0
    backoff = 0.5
    while not stop.is_set():
        try:
            if not leader.hold():
                if leading:
                    log.warning("another backend holds the leader lock; standing by")
                leading = False
                stop.wait(min(1.0, leader.ttl / 3))
                continue
            if not leading:
                log.info("acting as the leader backend (scan every %gs)", scan_interval)
                streams = reconciler.follow_known_streams()
                events.ensure_group(redis, streams)
                if events.unread_were_dropped(redis, streams):
                    log.warning("events were dropped from the stream before they were read; the scan reconciles")
                pending = events.read_group(redis, None, pending=True, streams=streams)
                if pending:
                    reconciler.apply_events(pending)
                    events.acknowledge(redis, pending)
                leading = True
                next_scan = 0.0
            if time.monotonic() >= next_scan:
                scanned = reconciler.scan()
                if metrics is not None:
                    metrics.scan_seconds.observe(scanned.seconds)
                    metrics.scans.inc()
                events.trim_applied(redis, reconciler.event_streams)
                next_scan = time.monotonic() + scan_interval
            if time.monotonic() >= next_prune:
                reconciler.prune_history()
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            wait = max(0.01, min(MAX_EVENT_WAIT_SECONDS, next_scan - time.monotonic(), leader.ttl / 3))
            batch = events.read_group(redis, int(wait * 1000), streams=reconciler.follow_new_workers())
            if batch:
                if reconciler.apply_events(batch):
                    next_scan = 0.0  # a worker came or went: reconcile its accounts now
                events.acknowledge(redis, batch)
                if metrics is not None:
                    metrics.events_applied.inc(len(batch))
            backoff = 0.5
        except (RedisError, *BROKER_UNAVAILABLE) as error:
            log.warning("Redis unavailable (%s); retrying in %.1fs", error, backoff)
            reconciler.grace.redis_lost()
            leading = False
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
        except SQLAlchemyError as error:
            log.warning("database unavailable (%s); retrying in %.1fs", error.__class__.__name__, backoff)
            leading = False  # re-read unacknowledged events once the database is back
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
    try:
        leader.release()
    except RedisError:
        pass
