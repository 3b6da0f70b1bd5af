"""The reconciler in-process, against a real Redis and both databases: discovery, silence, events, batching."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from sqlalchemy import event, select

from backend.leader import LeaderLock
from backend.reconciler import Reconciler
from celery_app import events, keys, presence
from celery_app.events import WireEventKind
from celery_app.presence import WorkerInfo
from database.engine import open_database
from database.events import recent_events
from database.models import FleetEvent, Worker
from database.workers import add_worker, list_workers


def _fake_worker(redis: Redis, name: str, age: float = 0.0) -> None:
    """A worker as Redis sees it: info hash and a heartbeat `age` seconds old (Redis time)."""
    now = presence.server_time(redis)
    info = WorkerInfo(name, f"addr-{name}", "host", 1, "0.1.0", now - 100, f"inst-{name}")
    redis.hset(keys.worker_info(name), mapping=info.to_redis())
    redis.zadd(keys.HEARTBEATS, {name: now - age})


@pytest.fixture
def reconciler(redis_client: Redis, database_url: str) -> Reconciler:
    _engine, sessions = open_database(database_url)
    return Reconciler(redis_client, sessions, offline_after=5)


def _workers(reconciler: Reconciler) -> dict[str, Worker]:
    with reconciler.sessions() as session:
        return {w.name: w for w in list_workers(session)}


def _kinds(reconciler: Reconciler, name: str) -> list[str]:
    with reconciler.sessions() as session:
        return list(session.scalars(select(FleetEvent.kind).where(FleetEvent.subject == name).order_by(FleetEvent.id)))


def test_scan_discovers_records_and_marks_silent_workers_offline(reconciler: Reconciler, redis_client: Redis) -> None:
    _fake_worker(redis_client, "fresh")
    _fake_worker(redis_client, "stale", age=30)
    report = reconciler.scan()
    assert sorted(report.discovered) == ["fresh", "stale"]
    workers = _workers(reconciler)
    assert workers["fresh"].status == "online" and workers["fresh"].address == "addr-fresh"
    assert workers["stale"].status == "offline"
    assert _kinds(reconciler, "fresh") == ["worker.discovered", "worker.online"]
    # fresh goes silent: offline on the next scan, with the reason
    redis_client.zadd(keys.HEARTBEATS, {"fresh": presence.server_time(redis_client) - 6})
    assert reconciler.scan().went_offline == ["fresh"]
    with reconciler.sessions() as session:
        last = recent_events(session, "fresh", 1)[0]
    assert last.kind == "worker.offline" and last.detail == "no heartbeat for 6 s"
    # A scan with nothing new writes no events.
    assert reconciler.scan().went_offline == []


def test_a_pre_registered_worker_keeps_its_admin_address(reconciler: Reconciler, redis_client: Redis) -> None:
    with reconciler.sessions.begin() as session:
        add_worker(session, "pre", "203.0.113.9", "cli:test")
    _fake_worker(redis_client, "pre")
    assert reconciler.scan().went_online == ["pre"]
    worker = _workers(reconciler)["pre"]
    assert worker.address == "203.0.113.9" and worker.status == "online"


def test_events_apply_in_order_then_settle_on_live_state(reconciler: Reconciler, redis_client: Redis) -> None:
    info = WorkerInfo("ev", "a", "h", 1, "0.1.0", time.time(), "i").to_dict()
    events.emit(redis_client, WireEventKind.WORKER_ONLINE, "ev", info)
    events.emit(redis_client, WireEventKind.WORKER_OFFLINE, "ev", {"reason": "stopped"})
    events.ensure_group(redis_client)
    reconciler.apply_events(events.read_group(redis_client, 100))
    assert _kinds(reconciler, "ev") == ["worker.discovered", "worker.online", "worker.offline"]
    assert _workers(reconciler)["ev"].status == "offline"
    # An online event for a worker whose heartbeat is stale settles offline at once.
    events.emit(redis_client, WireEventKind.WORKER_ONLINE, "ev", info)
    reconciler.apply_events(events.read_group(redis_client, 100))
    assert _workers(reconciler)["ev"].status == "offline"
    assert _kinds(reconciler, "ev")[-2:] == ["worker.online", "worker.offline"]


def test_a_scan_costs_a_fixed_number_of_statements_and_round_trips(reconciler: Reconciler, redis_client: Redis) -> None:
    for index in range(300):
        _fake_worker(redis_client, f"w{index:03d}", age=0 if index % 2 else 30)
    statements: list[str] = []
    engine = reconciler.sessions.kw["bind"]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, _params, _context, executemany) -> None:
        statements.append(statement.split()[0])

    def commands() -> int:
        return int(redis_client.info("stats")["total_commands_processed"])

    before = commands()
    reconciler.scan()  # discovers 300 workers
    discovery_commands = commands() - before - 1  # minus the INFO call itself
    first = len(statements)
    for index in range(0, 300, 3):  # a third of them heartbeat again
        _fake_worker(redis_client, f"w{index:03d}")
    statements.clear()
    before = commands()
    reconciler.scan()
    steady_commands = commands() - before - 1
    # Statements do not grow with the number of workers (executemany counts once).
    assert first <= 6, statements
    assert len(statements) <= 6, statements
    # Redis, in one round trip: TIME, INFO (the primary's run id) and a script reading the index and every
    # worker's own last heartbeat (its ZRANGE and an HGET per worker count as commands); plus one pipelined
    # HGETALL per newly discovered worker, and the backend's group on each new worker's event stream.
    assert discovery_commands == 3 + 1 + 300 + 300 + 300
    assert steady_commands == 3 + 1 + 300


def test_only_the_lock_holder_leads(redis_client: Redis) -> None:
    first, second = LeaderLock(redis_client, ttl=0.5), LeaderLock(redis_client, ttl=0.5)
    assert first.hold() and not second.hold()
    assert first.hold()  # renewing
    time.sleep(0.6)  # the leader died: its lock lapses
    assert second.hold() and not first.hold()
    second.release()
    assert first.hold()
