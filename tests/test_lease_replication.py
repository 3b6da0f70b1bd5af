"""Leases through asynchronous replication, against a real primary and replica (`tests/support/replication`).

A write the primary has not sent to its replica is lost when the replica is promoted. These tests show that
loss is real, and that a lease is never granted (nor a renewal counted by the fence) until a replica has it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_app import keys, leases, presence
from celery_app.presence import WorkerInfo
from common.details import Detail
from tests.support.replication import PrimaryWithReplica
from tests.support.stack import wait_until
from worker.presence import PresenceKeeper

HOLDER = "w1/instance-a"
OTHER = "w2/instance-b"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[PrimaryWithReplica]:
    with PrimaryWithReplica(tmp_path / "redis") as started:
        yield started


def test_a_granted_lease_is_on_the_replica_when_acquire_returns(pair: PrimaryWithReplica) -> None:
    # A fresh client knows nothing of replicas: the script's reply reveals one, and the grant waits for it.
    assert leases.acquire(pair.primary, 1, HOLDER, 30) == (True, HOLDER)
    assert pair.replica.get(keys.worker_lease("w1", 1)) == HOLDER
    assert leases.renew(pair.primary, [1], HOLDER, 30) == []
    assert leases.release(pair.primary, 1, HOLDER)
    assert pair.replica.get(keys.worker_lease("w1", 1)) is None


def test_a_grant_no_replica_acknowledges_is_not_granted_and_later_acquires_are(pair: PrimaryWithReplica) -> None:
    assert leases.acquire(pair.primary, 1, HOLDER, 30)[0]  # the client now knows the replica
    pair.hold()
    assert leases.acquire(pair.primary, 2, HOLDER, 30) == (False, "")
    assert pair.primary.get(keys.worker_lease("w1", 2)) is None  # let go at once: nobody holds it
    # While the replica stalls, acquires are refused without writing (one timeout, not one per account).
    assert leases.acquire(pair.primary, 3, HOLDER, 30) == (False, "")
    assert pair.primary.get(keys.worker_lease("w1", 3)) is None
    pair.release()
    wait_until(lambda: leases.acquire(pair.primary, 2, HOLDER, 30)[0], 30, interval=0.2, message="granted again")
    assert pair.replica.get(keys.worker_lease("w1", 2)) == HOLDER


def test_a_failover_loses_what_the_replica_did_not_have_but_never_a_granted_lease(pair: PrimaryWithReplica) -> None:
    pair.primary.zadd(keys.HEARTBEATS, {"w1": 1.0, "w2": 1.0})  # both workers are known to the fleet
    assert leases.acquire(pair.primary, 1, HOLDER, 30)[0]
    pair.hold()
    pair.primary.set("probe", "written before the failover")
    refused = leases.acquire(pair.primary, 2, HOLDER, 30)
    promoted = pair.fail_over()
    assert promoted.get("probe") is None  # asynchronous replication lost it: the danger is real
    assert refused == (False, "")  # the lease in the same spot was never granted: nothing ran under it
    assert promoted.get(keys.worker_lease("w1", 1)) == HOLDER  # the granted one survived the failover
    assert promoted.get(keys.worker_lease("w1", 2)) is None
    # The promoted primary has no replica of its own: leases are granted there without waiting.
    assert leases.acquire(promoted, 2, OTHER, 30) == (True, OTHER)
    assert leases.acquire(promoted, 1, OTHER, 30) == (False, HOLDER)


def test_a_renewal_no_replica_acknowledges_raises_but_leases_held_elsewhere_come_first(
    pair: PrimaryWithReplica,
) -> None:
    assert leases.acquire(pair.primary, 1, HOLDER, 30)[0]
    leases.assign(pair.primary, 2, "w2")  # the control plane gave account 2 to w2, which runs it
    assert leases.acquire(pair.primary, 2, OTHER, 30)[0]
    pair.hold()
    with pytest.raises(leases.NotReplicated):
        leases.renew(pair.primary, [1], HOLDER, 30)
    # A lease another holder has must stop its client now: that answer is not held back by the replica.
    assert leases.renew(pair.primary, [1, 2], HOLDER, 30) == [2]
    pair.release()
    assert leases.renew(pair.primary, [1], HOLDER, 30) == []


def test_the_fence_counts_only_renewals_a_replica_acknowledged(pair: PrimaryWithReplica) -> None:
    """Heartbeats keep reaching the primary, yet with the replica stalled the worker fences itself: its
    renewals could be undone by a failover, so its leases on the replica run out from the last one it has."""
    assert leases.acquire(pair.primary, 1, HOLDER, 2)[0]
    info = WorkerInfo("w1", "addr", "host", 1, "0", time.time(), "instance-a")
    renewals: list[float] = []
    fenced = threading.Event()

    def renew() -> None:
        renewals.append(time.monotonic())
        leases.renew(pair.primary, [1], HOLDER, 2)

    def fence(_reason: Detail) -> None:
        fenced.set()

    keeper = PresenceKeeper(
        pair.primary,
        info,
        heartbeat_interval=0.1,
        offline_after=2,
        on_beat=renew,
        fence_after=presence.fence_after(2),
        on_fence=fence,
    )
    keeper.register()
    keeper.start()
    try:
        wait_until(lambda: len(renewals) >= 20, 60, message="two seconds' worth of acknowledged renewals")
        assert not fenced.is_set()  # a healthy replica: renewals count, no fence
        pair.hold()
        beat_before = presence.read_heartbeats(pair.primary, ["w1"]).beats["w1"]
        wait_until(fenced.is_set, 60, message="fenced while its renewals go unacknowledged")
        # ...while heartbeats go on (on a busy machine the fence can come before the next one lands).
        wait_until(
            lambda: presence.read_heartbeats(pair.primary, ["w1"]).beats["w1"] > beat_before,
            30,
            message="heartbeats go on while fenced",
        )
        pair.release()
        wait_until(lambda: time.monotonic() - keeper.last_contact < 1.0, 60, message="renewals count again")
    finally:
        keeper.go_offline()
        keeper.join(5)


def test_a_status_said_before_a_client_lets_go_survives_a_failover(pair: PrimaryWithReplica) -> None:
    """A stop says "stopping", flushed, before the client disconnects; with replicas that flush returns only once
    a replica has it, so a failover right after cannot bring back "running" for a client that is gone (the
    failover test's sampler saw one moved account shown running on its old worker)."""
    from celery_app.account_state import AccountState, AccountStatus
    from worker.status import StatusReporter

    assert leases.acquire(pair.primary, 1, HOLDER, 30)[0]  # the worker has heard of the replica
    reporter = StatusReporter(pair.primary, HOLDER)
    reporter.start()
    try:
        pair.hold()
        threading.Timer(0.3, pair.release).start()  # the replica catches up a moment later
        reporter.report(AccountState(1, AccountStatus.STOPPING, "w1", active=True))
        assert reporter.flush(10)
        promoted = pair.fail_over()
        assert promoted.hget(keys.account_state("w1", 1), "status") == "stopping"
    finally:
        reporter.close(1)
