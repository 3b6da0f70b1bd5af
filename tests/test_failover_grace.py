"""The backend through a Redis failover: heartbeats lost with the old primary make no live worker offline.

A real primary and replica (`tests/support/replication`); the worker is simulated in Redis as real ones
publish themselves; the reconciler follows the promoted replica as a Sentinel client would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import select

from backend.account_sync import AccountSync
from backend.dispatch import TaskDispatcher
from backend.reconciler import Reconciler
from celery_app import keys, presence, report
from celery_app.presence import WorkerInfo
from database.engine import open_database
from database.models import Account, FleetEvent, Worker, epoch_to_datetime
from database.workers import add_worker
from tests.support.replication import PrimaryWithReplica
from tests.support.stack import wait_until


def beat(redis: Redis, name: str, statuses: dict[int, str], age: float = 0.0, offline_after: float = 4.0) -> None:
    """`name` registers and reports `statuses`; its heartbeat and report are `age` s old."""
    presence.register(
        redis,
        WorkerInfo(name, "a", "h", 1, "0.1.0", 0, f"inst-{name}"),
        offline_after,
        report=report.encode(statuses.items()),
    )
    at = presence.server_time(redis) - age
    redis.zadd(keys.HEARTBEATS, {name: at})
    redis.hset(keys.worker_report(name), "at", f"{at:.6f}")


def scanner(database_url: str, redis: Redis, redis_url: str, offline_after: float) -> Reconciler:
    _engine, sessions = open_database(database_url)
    sync = AccountSync(TaskDispatcher(redis_url), lease_wait=5, cooldown=15, max_cooldown=120)
    return Reconciler(redis, sessions, offline_after, sync)


def add_account(reconciler: Reconciler, worker_name: str, redis: Redis) -> int:
    with reconciler.sessions.begin() as session:
        worker = add_worker(session, worker_name, "addr", "test")
        row = Account(
            phone_enc="p" * 40,
            phone_lookup=uuid.uuid4().hex,
            phone_masked="+1 *** ***-00-00",
            api_id=1,
            api_hash_enc="h" * 40,
            session_enc="s" * 40,
            worker_id=worker.id,
            desired_state="running",
            status="running",
            status_detail="",
            status_changed_at=epoch_to_datetime(presence.server_time(redis) - 60),
        )
        session.add(row)
        session.flush()
        return row.id


def state(reconciler: Reconciler, account_id: int, worker: str) -> tuple[str, str, list[str]]:
    """The account's recorded status, its worker's recorded status, and the worker's fleet events."""
    with reconciler.sessions() as session:
        account = session.get(Account, account_id)
        row = session.scalar(select(Worker).where(Worker.name == worker))
        assert account is not None and row is not None
        kinds = list(
            session.scalars(select(FleetEvent.kind).where(FleetEvent.subject == worker).order_by(FleetEvent.id))
        )
        return account.status, row.status, kinds


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[PrimaryWithReplica]:
    with PrimaryWithReplica(tmp_path / "redis") as started:
        yield started


def failover_losing_the_last_heartbeats(pair: PrimaryWithReplica, account_id: int) -> Redis:
    """The replica's last heartbeat of w1 is 10 s old; the fresh ones reach only the primary, which dies."""
    beat(pair.primary, "w1", {account_id: "running"}, age=10)
    wait_until(lambda: pair.replica.zscore(keys.HEARTBEATS, "w1") is not None, 10, message="replicated")
    wait_until(
        lambda: presence.server_time(pair.replica) - pair.replica.zscore(keys.HEARTBEATS, "w1") > 9,
        10,
        message="the stale heartbeat replicated",
    )
    pair.hold()
    beat(pair.primary, "w1", {account_id: "running"})  # lost with the primary
    return pair.fail_over()


def test_heartbeats_lost_with_the_primary_make_no_live_worker_offline(
    pair: PrimaryWithReplica, sqlite_url: str
) -> None:
    replica_url = f"redis://127.0.0.1:{pair.replica_port}/0"
    reconciler = scanner(sqlite_url, pair.primary, replica_url, offline_after=4)
    account_id = add_account(reconciler, "w1", pair.primary)
    beat(pair.primary, "w1", {account_id: "running"})
    reconciler.scan()
    assert state(reconciler, account_id, "w1") == ("running", "online", ["worker.added", "worker.online"])

    reconciler.redis = pair.primary = failover_losing_the_last_heartbeats(pair, account_id)  # as Sentinel follows
    scanned = reconciler.scan()
    # Judged by the stale heartbeat alone, w1 would be offline and its account lost (and started again).
    assert scanned.went_offline == [] and scanned.accounts is not None
    assert (scanned.accounts.corrected, scanned.accounts.started, scanned.accounts.stopped) == (0, 0, 0)
    assert state(reconciler, account_id, "w1") == ("running", "online", ["worker.added", "worker.online"])
    # The worker beats on the new primary: nothing happened, as far as the record goes.
    beat(pair.primary, "w1", {account_id: "running"})
    reconciler.scan()
    assert state(reconciler, account_id, "w1") == ("running", "online", ["worker.added", "worker.online"])


def test_a_worker_silent_past_the_grace_is_judged_offline(pair: PrimaryWithReplica, sqlite_url: str) -> None:
    replica_url = f"redis://127.0.0.1:{pair.replica_port}/0"
    reconciler = scanner(sqlite_url, pair.primary, replica_url, offline_after=2)
    account_id = add_account(reconciler, "w1", pair.primary)
    beat(pair.primary, "w1", {account_id: "running"}, offline_after=2)
    reconciler.scan()
    reconciler.redis = pair.primary = failover_losing_the_last_heartbeats(pair, account_id)
    assert reconciler.scan().went_offline == []
    wait_until(lambda: reconciler.scan().went_offline == ["w1"], 30, interval=0.2, message="offline after the grace")
    assert state(reconciler, account_id, "w1")[:2] == ("lost", "offline")


def test_redis_out_of_reach_graces_too_but_never_brings_back_a_worker_recorded_offline(
    redis_client: Redis, redis_url: str, sqlite_url: str
) -> None:
    reconciler = scanner(sqlite_url, redis_client, redis_url, offline_after=4)
    live, gone = add_account(reconciler, "live", redis_client), add_account(reconciler, "gone", redis_client)
    beat(redis_client, "live", {live: "running"})
    beat(redis_client, "gone", {gone: "running"}, age=10)
    reconciler.scan()
    assert state(reconciler, gone, "gone")[:2] == ("lost", "offline")
    beat(redis_client, "live", {live: "running"}, age=10)  # its last heartbeats went nowhere: Redis was away
    reconciler.grace.redis_lost()
    scanned = reconciler.scan()
    assert scanned.went_offline == [] and scanned.went_online == []
    assert state(reconciler, live, "live")[:2] == ("running", "online")
    assert state(reconciler, gone, "gone")[:2] == ("lost", "offline")
