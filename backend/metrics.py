"""Prometheus metrics of the fleet, served by the backend on METRICS_LISTEN (`prometheus_client`).

What the fleet is (workers, heartbeat ages, accounts by status and worker, alerts sent) is read live at each
scrape by `FleetCollector`, from the same sources as the CLI: heartbeats and workers' reports in Redis, the
record in the database; `running` counts only what a live worker reports, anything else recorded running is
`unknown`. What the backend does (scans, events applied, the round trip of a probe task) is measured in
process as it happens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from celery_app import keys, presence, report
from celery_app.account_state import UNKNOWN
from celery_app.presence import Liveness, liveness
from database.models import Account
from database.workers import worker_rows

log = logging.getLogger(__name__)


class FleetCollector(Collector):
    def __init__(self, redis: Redis, sessions: sessionmaker[Session], offline_after: float) -> None:
        self.redis = redis
        self.sessions = sessions
        self.offline_after = offline_after

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except (RedisError, SQLAlchemyError) as error:  # a scrape must answer, not fail
            log.warning("metrics: could not read the fleet's state (%s)", error.__class__.__name__)
            up = GaugeMetricFamily("fleet_state_readable", "1 when Redis and the database could be read")
            up.add_metric([], 0)
            yield up

    def _collect(self) -> Iterator[Metric]:
        snapshot = presence.read_all_heartbeats(self.redis)
        with self.sessions() as session:
            rows = worker_rows(session)
            counts = session.execute(
                select(Account.worker_id, Account.status, func.count(Account.id)).group_by(
                    Account.worker_id, Account.status
                )
            ).all()
        online = {
            name
            for name in rows
            if liveness(snapshot.beats.get(name), snapshot.now, self.offline_after) is Liveness.ONLINE
        }
        reports = report.read_reports(self.redis, sorted(online))
        fence = presence.fence_after(self.offline_after)

        workers = GaugeMetricFamily("fleet_workers", "Workers by liveness", labels=["status"])
        workers.add_metric(["online"], len(online))
        workers.add_metric(["offline"], len(rows) - len(online))
        yield workers
        active = GaugeMetricFamily("fleet_workers_active", "Workers switched on by the admins (not deactivated)")
        active.add_metric([], sum(1 for row in rows.values() if row.is_active))
        yield active
        ages = GaugeMetricFamily(
            "fleet_worker_heartbeat_age_seconds", "Seconds since each worker's last heartbeat", labels=["worker"]
        )
        for name in rows:
            beat = snapshot.beats.get(name)
            if beat is not None:
                ages.add_metric([name], max(0.0, snapshot.now - beat))
        yield ages

        names = {row.id: name for name, row in rows.items()}
        by_worker: dict[tuple[str, str], int] = {}
        for worker_id, status, count in counts:
            worker = names.get(worker_id, "") if worker_id is not None else ""
            by_worker[(worker, status)] = by_worker.get((worker, status), 0) + int(count)
        for name in rows:
            recorded = by_worker.pop((name, "running"), 0)
            found = reports.get(name)
            beat = snapshot.beats.get(name)
            believable = name in online and found is not None and beat is not None and snapshot.now - beat <= fence
            live = found.count("running") if believable and found is not None else 0
            if live:
                by_worker[(name, "running")] = live
            if recorded > live:
                by_worker[(name, UNKNOWN)] = by_worker.get((name, UNKNOWN), 0) + recorded - live
        accounts = GaugeMetricFamily(
            "fleet_accounts",
            "Accounts by status and worker; running only as live workers report it, unknown when no one can tell",
            labels=["worker", "status"],
        )
        for (worker, status), count in sorted(by_worker.items()):
            accounts.add_metric([worker, status], count)
        yield accounts

        alerts = CounterMetricFamily("fleet_alerts_sent", "Alerts the admin bot sent, by kind", labels=["kind"])
        for kind, count in sorted(self.redis.hgetall(keys.ALERTS_SENT).items()):
            alerts.add_metric([str(kind)], float(count))
        yield alerts
        up = GaugeMetricFamily("fleet_state_readable", "1 when Redis and the database could be read")
        up.add_metric([], 1)
        yield up


class BackendMetrics:
    """The backend's own measurements, and the registry served on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.scan_seconds = Histogram(
            "fleet_scan_duration_seconds",
            "Duration of one whole-fleet scan",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.scans = Counter("fleet_scans", "Scans completed", registry=self.registry)
        self.events_applied = Counter("fleet_events_applied", "Worker events applied", registry=self.registry)
        self.task_roundtrip = Histogram(
            "fleet_task_roundtrip_seconds",
            "Round trip of a ping task to a worker and back (a probe, a few workers a minute)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.task_timeouts = Counter(
            "fleet_task_timeouts", "Probe tasks a worker did not answer", registry=self.registry
        )

    def watch(self, redis: Redis, sessions: sessionmaker[Session], offline_after: float) -> None:
        self.registry.register(FleetCollector(redis, sessions, offline_after))

    def serve(self, listen: str) -> Any:
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        log.info("metrics on http://%s/metrics", listen)
        return server


class RoundTripProbe:
    """Every `every` seconds, ping the next online worker (round robin) and time the answer."""

    def __init__(self, metrics: BackendMetrics, redis: Redis, dispatcher: Any, offline_after: float) -> None:
        self.metrics = metrics
        self.redis = redis
        self.dispatcher = dispatcher
        self.offline_after = offline_after
        self._index = 0

    def run(self, stop: threading.Event, every: float = 15.0, timeout: float = 10.0) -> None:
        import time

        from backend.dispatch import WorkerDidNotAnswer
        from celery_app.contract import TaskName

        while not stop.is_set():
            try:
                snapshot = presence.read_all_heartbeats(self.redis)
                online = snapshot.online(self.offline_after)
                if not online:
                    stop.wait(every)
                    continue
                name = online[self._index % len(online)]
                self._index += 1
                started = time.perf_counter()
                self.dispatcher.call(name, TaskName.PING, timeout=timeout)
                self.metrics.task_roundtrip.observe(time.perf_counter() - started)
            except WorkerDidNotAnswer:
                self.metrics.task_timeouts.inc()
            except Exception as error:  # noqa: BLE001 - a probe never stops the backend
                log.debug("round-trip probe failed: %s", error)
            stop.wait(every)
