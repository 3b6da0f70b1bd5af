"""Presence in a real Redis: liveness, registration, heartbeats, takeover and loss of data."""

from __future__ import annotations

import os
import time

from redis import Redis

from celery_app import events, keys, presence, report
from celery_app.presence import BeatResult, Liveness, WorkerInfo, liveness
from worker.presence import NameInUse, PresenceKeeper


def _info(name: str = "w1", pid: int | None = None, instance: str = "i1") -> WorkerInfo:
    return WorkerInfo(name, "10.0.0.1", os.uname().nodename, pid or os.getpid(), "0.1.0", time.time(), instance)


def test_liveness_is_derived_from_the_last_heartbeat() -> None:
    assert liveness(None, 100.0, 60) is Liveness.OFFLINE
    assert liveness(40.0, 100.0, 60) is Liveness.ONLINE
    assert liveness(39.9, 100.0, 60) is Liveness.OFFLINE


def test_register_beat_unregister(redis_client: Redis) -> None:
    info = _info()
    assert presence.register(redis_client, info, 5).registered
    snapshot = presence.read_all_heartbeats(redis_client)
    assert abs(snapshot.beats["w1"] - snapshot.now) < 10  # Redis time, not this clock: loose on a busy machine
    assert presence.read_infos(redis_client, ["w1"])["w1"] == info
    assert presence.beat(redis_client, "w1", "i1", 5) is BeatResult.OK
    assert 4000 < redis_client.pttl(keys.worker_owner("w1")) <= 5000
    assert presence.unregister(redis_client, "w1", "i1")
    assert "w1" not in presence.read_all_heartbeats(redis_client).beats


def test_a_second_instance_cannot_register_an_owned_name(redis_client: Redis) -> None:
    assert presence.register(redis_client, _info(instance="first"), 5).registered
    result = presence.register(redis_client, _info(instance="second"), 5)
    assert not result.registered and result.holder_instance == "first"
    assert presence.beat(redis_client, "w1", "second", 5) is BeatResult.TAKEN
    assert not presence.unregister(redis_client, "w1", "second")


def test_heartbeat_after_data_loss_asks_to_register_again(redis_client: Redis) -> None:
    presence.register(redis_client, _info(), 5)
    redis_client.flushall()
    assert presence.beat(redis_client, "w1", "i1", 5) is BeatResult.REREGISTER


def test_keeper_refuses_a_live_name_and_takes_over_a_dead_one(redis_client: Redis) -> None:
    alive = PresenceKeeper(redis_client, _info(instance="alive"), 0.2, 5)
    alive.register()
    intruder = PresenceKeeper(redis_client, _info(instance="intruder", pid=os.getpid()), 0.2, 5)
    try:
        intruder.register()
        raise AssertionError("expected NameInUse")
    except NameInUse as error:
        assert "already in use" in str(error)
    # A holder whose process is dead on this host is taken over at once.
    redis_client.hset(keys.worker_info("w1"), "pid", "999999")
    intruder.register()
    assert redis_client.get(keys.worker_owner("w1")) == "intruder"


def test_keeper_reregisters_after_redis_loses_everything(redis_client: Redis) -> None:
    keeper = PresenceKeeper(redis_client, _info(), 0.05, 5)
    keeper.register()
    keeper.start()
    try:
        redis_client.flushall()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not redis_client.exists(keys.worker_info("w1")):
            time.sleep(0.02)
        assert redis_client.get(keys.worker_owner("w1")) == "i1"
        kinds = [e.kind for e in _stream(redis_client)]
        assert kinds == ["worker.online"]
    finally:
        keeper.go_offline()
    assert [e.kind for e in _stream(redis_client)][-1] == "worker.offline"


def _stream(redis: Redis) -> list[events.WireEvent]:
    return [events.WireEvent.from_fields(i, f) for i, f in redis.xrange(keys.worker_events("w1"))]  # type: ignore[misc]


def test_malformed_stream_entries_are_recognised(redis_client: Redis) -> None:
    redis_client.xadd(keys.EVENTS_STREAM, {"kind": "worker.online"})
    redis_client.xadd(keys.EVENTS_STREAM, {"kind": "x", "subject": "y", "data": "not json"})
    events.ensure_group(redis_client)
    batch = events.read_group(redis_client, 100)
    assert [e.kind for e in batch] == ["invalid", "invalid"]


def test_a_status_written_after_the_heartbeat_snapshot_reads_as_newer(redis_client: Redis) -> None:
    """The report is stamped before its snapshot: a status that changes meanwhile is not hidden by it."""
    from backend.observed import Recorded, observe, sight
    from celery_app.account_state import AccountState, AccountStatus, read_states
    from celery_app.report import encode, read_reports
    from worker.status import StatusReporter

    reporter = StatusReporter(redis_client, "w1/i1")
    reporter.start()

    def snapshot_then_change() -> str:
        taken = encode([(7, "starting")])  # the account was still starting when the snapshot was taken
        reporter.report(AccountState(7, AccountStatus.RUNNING, "w1", active=True))
        assert reporter.flush()  # ...and its "running" reached Redis before the heartbeat did
        return taken

    keeper = PresenceKeeper(redis_client, _info(), 0.2, 5, report=snapshot_then_change)
    keeper.register()
    try:
        snapshot = presence.read_all_heartbeats(redis_client)
        worker = sight("w1", snapshot.beats["w1"], snapshot.now, 5, read_reports(redis_client, ["w1"])["w1"])
        latest = read_states(redis_client, {7: "w1"})[7]
        seen = observe(7, Recorded("starting", "", None, "running"), worker, latest)
        assert seen.status == "running" and seen.live
    finally:
        keeper.go_offline()
        reporter.close()


def test_flush_waits_for_what_was_reported_before_it_not_for_a_quiet_queue(redis_client: Redis) -> None:
    """Hundreds of accounts report all the time: a stop that flushes its final status must not wait for a moment
    when nobody reports (there is none), only for the reports made before it."""
    import threading

    from celery_app.account_state import AccountState, AccountStatus, read_states
    from worker.status import StatusReporter

    reporter = StatusReporter(redis_client, "w1/i1")
    reporter.start()
    busy = threading.Event()
    done = threading.Event()

    def chatter() -> None:  # other accounts, reporting without a pause
        n = 0
        while not done.is_set():
            reporter.report(AccountState(1000 + n % 50, AccountStatus.RUNNING, "w1", active=True))
            n += 1
            if n == 200:
                busy.set()

    thread = threading.Thread(target=chatter, daemon=True)
    thread.start()
    try:
        assert busy.wait(30)
        reporter.report(AccountState(7, AccountStatus.STOPPED, "w1", active=False))
        assert reporter.flush(timeout=30), "flush waited for a quiet queue"
        assert read_states(redis_client, {7: "w1"})[7].status == AccountStatus.STOPPED
    finally:
        done.set()
        thread.join(10)
        reporter.close()


def test_a_heartbeat_whose_renewal_then_lost_redis_still_counts_for_the_fence(redis_client: Redis) -> None:
    """Redis went out of reach between a heartbeat and its lease renewal: the CLI judges the worker's silence by
    that heartbeat, so the fence may not come earlier (the worker could not report that it stopped its clients:
    the chaos sampler saw them shown running meanwhile); a renewal no replica acknowledged does not count."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from celery_app.leases import NotReplicated

    failure: list[Exception] = []

    def renew() -> None:
        if failure:
            raise failure[0]

    keeper = PresenceKeeper(redis_client, _info(), 0.2, 5, on_beat=renew, fence_after=2.5)
    keeper.register()
    assert keeper.beat_once()
    renewed_at = keeper.last_contact
    time.sleep(0.05)
    failure.append(RedisConnectionError("cut between the heartbeat and its renewal"))
    before = time.monotonic()
    assert keeper.beat_once()
    assert before <= keeper.last_contact <= renewed_at + 2.5, "the heartbeat Redis holds counts"
    failure[0] = NotReplicated("no replica acknowledged")
    counted = keeper.last_contact
    time.sleep(0.05)
    assert keeper.beat_once()
    assert keeper.last_contact == counted, "an unacknowledged renewal does not count"


def test_a_report_replicated_from_a_primary_that_failed_over_is_no_report(redis_client: Redis) -> None:
    """The promoted replica holds the old primary's last reports (stamped with its run id): they may say
    "running" for clients stopped since, so they are not read until the worker writes its own there."""
    info = WorkerInfo("w1", "10.0.0.1", "host", 1, "1.0", time.time(), "inst-1")
    presence.register(redis_client, info, 10, report=report.encode([(7, "running")]))
    here = redis_client.info("server")["run_id"]
    assert redis_client.hget(keys.worker_report("w1"), "server") == here
    assert report.read_reports(redis_client, ["w1"])["w1"].statuses == {7: "running"}
    redis_client.hset(keys.worker_report("w1"), "server", "0" * 40)  # as the old primary wrote it
    assert report.read_reports(redis_client, ["w1"]) == {}
    presence.beat(redis_client, "w1", "inst-1", 10, report=report.encode([]))  # the worker, on this server
    assert report.read_reports(redis_client, ["w1"])["w1"].statuses == {}
    redis_client.hdel(keys.worker_report("w1"), "server")  # a worker of a version that does not stamp it
    assert "w1" in report.read_reports(redis_client, ["w1"])
